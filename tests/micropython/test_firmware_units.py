"""Firmware modules under the MicroPython unix port, checked against CPython references."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json

import numpy as np
import pytest

from agentmesh.gateway_peer import protocol
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.model import MlpModel
from agentmesh.gateway_peer.transfer import ModelTransfer

from ._mpy import run_script

pytestmark = pytest.mark.micropython


def test_hmac_matches_cpython_for_short_and_long_keys() -> None:
    keys = [b"k", bytes(range(32)), bytes(range(100))]  # 100 > block size: hashed first
    messages = [b"", b"abc", bytes(range(256)) * 3]
    out = run_script(
        "from amesh_hmac import HmacSha256, equal\n"
        f"keys = {keys!r}\nmessages = {messages!r}\n"
        "for k in keys:\n"
        "    for m in messages:\n"
        "        print(HmacSha256(k).digest(m).hex())\n"
        "print(equal(b'ab', b'ab'), equal(b'ab', b'ac'), equal(b'a', b'ab'))\n"
    )
    expected = [hmac.new(k, m, hashlib.sha256).hexdigest() for k in keys for m in messages]
    assert out.split()[:-3] == expected
    assert out.split()[-3:] == ["True", "False", "False"]


def _downlink(device: SimulatedDevice, msg_type: int, counter: int, body: dict) -> bytes:  # type: ignore[type-arg]
    return protocol.seal(device.key, msg_type, device.device_id, counter, device.nonce, body)


def test_link_accepts_fresh_and_rejects_forged_replayed_and_foreign() -> None:
    key, nonce = bytes(range(32)), b"\x01" * 8
    device = SimulatedDevice("mcu-1", key, nonce)
    fresh = _downlink(device, protocol.WELCOME, 5, {"g": "gw", "hb": 1000})
    late = _downlink(device, protocol.WELCOME, 3, {"g": "gw", "hb": 1000})  # reordered: fine
    forged = bytearray(fresh)
    forged[10] ^= 0x40
    wrong_nonce = protocol.seal(key, protocol.WELCOME, "mcu-1", 9, b"\x02" * 8, {})
    uplink_type = protocol.seal(key, protocol.HELLO, "mcu-1", 10, nonce, {})
    datagrams = [fresh, fresh, late, bytes(forged), wrong_nonce, uplink_type, b"\x00" * 20]
    out = run_script(
        "import amesh_wire as w\n"
        "class C:\n    def next(self): return 1\n"
        f"link = w.Link('mcu-1', {key!r}, {nonce!r}, C())\n"
        f"for d in {datagrams!r}:\n"
        "    r = link.open(d)\n"
        "    print(r[0] if r else None)\n"
        "print(sorted(link.rejected.items()))\n"
    )
    lines = out.strip().splitlines()
    assert lines[:7] == ["16", "None", "16", "None", "None", "None", "None"]
    assert lines[7] == "[('bad_mac', 1), ('replay', 2), ('schema', 1), ('size', 1)]"


def test_sealed_uplink_is_accepted_by_the_gateway_codec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key, nonce = bytes(range(32)), b"\x07" * 8
    counter_file = tmp_path / "counter"
    out = run_script(
        "import amesh_wire as w\n"
        f"store = w.CounterStore({str(counter_file)!r}, 10)\n"
        f"link = w.Link('mcu-2', {key!r}, {nonce!r}, store)\n"
        "body = {'up': 5, 'free': 100, 'm': 0}\n"
        "print(link.seal(w.HEARTBEAT, body).hex())\n"
    )
    datagram = bytes.fromhex(out.strip())
    limits = GatewayLimits()
    frame = protocol.open_frame(
        datagram, protocol.UPLINK_TYPES, limits, protocol.decode_limits(limits)
    )
    assert protocol.tag_matches(key, frame)
    assert (frame.counter, frame.nonce, frame.body) == (1, nonce, {"up": 5, "free": 100, "m": 0})
    assert counter_file.read_text() == "10"  # reserved ahead at boot: 0 + step


def test_counter_resumes_above_every_counter_used_before_a_reboot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "counter")
    script = (
        "import amesh_wire as w\n"
        f"s = w.CounterStore({path!r}, 4)\n"
        "print(','.join(str(s.next()) for _ in range(6)))\n"
    )
    first = [int(v) for v in run_script(script).split(",")]
    second = [int(v) for v in run_script(script).split(",")]
    assert first == [1, 2, 3, 4, 5, 6]
    assert min(second) > max(first)


@pytest.mark.parametrize(
    ("layers", "heap"), [((64, 32, 10), "256k"), ((64, 128, 10), "512k"), ((3, 5, 4, 2), "128k")]
)
def test_forward_matches_numpy_float32(layers: tuple[int, ...], heap: str) -> None:
    """Chunks in, digest checked, forward pass equal to numpy's to float32 tolerance."""
    rng = np.random.default_rng(len(layers) * 100 + layers[1])
    arrays: list[np.ndarray] = []
    for n_in, n_out in itertools.pairwise(layers):
        arrays += [
            rng.normal(0, 0.5, (n_in, n_out)).astype(np.float32),
            rng.normal(0, 0.1, n_out).astype(np.float32),
        ]
    model = MlpModel.from_arrays(9, arrays, GatewayLimits())
    transfer = ModelTransfer(model, 1024, 8, 100, 3)
    chunks = [transfer.chunk_body(i) for i in reversed(range(transfer.chunks_count))]
    inputs = rng.normal(size=(3, layers[0])).astype(np.float32)
    out = run_script(
        "from array import array\n"
        "from amesh_mlp import ModelSlot, allocate_blocks\n"
        f"slot = ModelSlot(allocate_blocks({len(model.data) // 4}, 4096))\n"
        f"for c in {chunks!r}:\n"
        "    ack = slot.on_chunk(c)\n"
        "print(ack['ok'], slot.model_id)\n"
        f"for x in {[row.tobytes() for row in inputs]!r}:\n"
        "    print(list(slot.forward(array('f', x))))\n",
        heap=heap,
    )
    lines = out.strip().splitlines()
    assert lines[0] == "True 9"
    got = np.array([json.loads(line) for line in lines[1:]], dtype=np.float32)
    np.testing.assert_allclose(got, model.forward(inputs), rtol=1e-5, atol=1e-5)


FRAGMENT_HEAP = (
    # Fill the heap with 512-byte pieces and free every other one: plenty of free bytes
    # but no hole of 1 KB, as on a 64 KB board after boot and a few datagrams.
    "import gc\n"
    "pieces = []\n"
    "try:\n"
    "    while True:\n"
    "        pieces.append(bytearray(496))\n"
    "except MemoryError:\n"
    "    pass\n"
    "for j in range(0, len(pieces), 2):\n"
    "    pieces[j] = None\n"
    "gc.collect()\n"
)


def test_model_chunks_load_on_a_heap_without_a_1kb_hole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each 1 KB chunk is stored without a chunk-sized allocation; 5 loads in a row."""
    model = MlpModel.from_arrays(
        4,
        [
            np.full((64, 32), 0.25, np.float32),
            np.zeros(32, np.float32),
            np.full((32, 10), -0.5, np.float32),
            np.ones(10, np.float32),
        ],
        GatewayLimits(),
    )
    transfer = ModelTransfer(model, 1024, 8, 100, 3)
    header = {key: value for key, value in transfer.chunk_body(0).items() if key not in "iod"}
    data_path = tmp_path / "model.bin"
    data_path.write_bytes(model.data)
    out = run_script(
        "from amesh_mlp import ModelSlot, allocate_blocks\n"
        f"data = open({str(data_path)!r}, 'rb')\n"
        # The chunks as the decoder hands them over: one 1 KB bytes object each.
        f"chunks = [dict({header!r}, i=i, o=i * 1024, d=data.read(1024))"
        f" for i in range({transfer.chunks_count})]\n"
        "data.close()\n"
        f"slot = ModelSlot(allocate_blocks({len(model.data) // 4}, 4096))\n"
        + FRAGMENT_HEAP
        + "for round_ in range(5):\n"
        "    slot.model_id = slot.pending = 0\n"
        "    for c in chunks:\n"
        "        ack = slot.on_chunk(c)\n"
        "        gc.collect()\n"
        "    print(ack['ok'], slot.model_id)\n",
        heap="64k",
    )
    assert out.split() == ["True", "4"] * 5
