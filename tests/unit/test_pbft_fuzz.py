"""Nothing a peer sends crashes a replica: random frames through the codec into the machine."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmesh.core.consensus import ConsensusConfig
from agentmesh.core.consensus.codec import CodecError, decode
from agentmesh.core.consensus.testing import LocalNet
from agentmesh.core.wire import cbor

CONFIG = ConsensusConfig(checkpoint_interval=4, window=8, view_change_timeout_ms=200)
NET = LocalNet(4, CONFIG)

scalars = st.one_of(
    st.integers(min_value=-5, max_value=2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=8),
    st.none(),
    st.sampled_from([b"PR", b"CM", b"PP", "r0", "r1", "r2", b"\x00" * 32]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=40)
frames = st.tuples(st.integers(min_value=0, max_value=25), st.lists(values, max_size=8)).map(
    lambda t: [t[0], *t[1]]
)


def _feed(message: Any) -> None:
    replica = NET.replicas["r1"]
    replica.receive(message, "r2", NET.now_ms)
    replica.take_outbox()
    replica.check_invariants()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_random_tagged_frames_decode_or_fail_typed_and_never_crash_the_replica(
    frame: list[Any],
) -> None:
    try:
        message = decode(cbor.encode(frame))
    except CodecError:
        return
    _feed(message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_typed_error_or_a_message(data: bytes) -> None:
    try:
        message = decode(data)
    except CodecError:
        return
    _feed(message)


def _plain(cls: type, depth: int = 0) -> st.SearchStrategy[list[Any]]:
    """Arrays with the right shape for `cls` and arbitrary field values."""
    from agentmesh.core.consensus import codec

    parts: list[st.SearchStrategy[Any]] = []
    for kind in codec._SCHEMA[cls]:
        if kind == "i":
            parts.append(st.integers(min_value=0, max_value=2**64 - 1) | st.integers(0, 40))
        elif kind == "b":
            parts.append(st.binary(max_size=40) | st.sampled_from([b"PR", b"CM", b"\x00" * 32]))
        elif kind == "s":
            parts.append(st.sampled_from(["r0", "r1", "r2", "r3", "", "x" * 70]))
        elif kind == "S":
            parts.append(st.lists(st.sampled_from(["r0", "r1", "r9"]), max_size=4))
        elif kind == "P":
            parts.append(
                st.lists(
                    st.tuples(st.sampled_from(["r0", "r1"]), st.binary(max_size=20)).map(list),
                    max_size=4,
                )
            )
        else:
            prefix, name = kind.split(":")
            inner = codec._BY_NAME[name]
            if depth > 1:
                parts.append(st.just([] if prefix == "M" else None))
            elif prefix == "M":
                parts.append(
                    st.lists(st.deferred(lambda inner=inner: _plain(inner, depth + 1)), max_size=3)
                )
            elif prefix == "o":
                parts.append(st.none() | st.deferred(lambda inner=inner: _plain(inner, depth + 1)))
            else:
                parts.append(st.deferred(lambda inner=inner: _plain(inner, depth + 1)))
    return st.tuples(*parts).map(list)


def _shaped() -> st.SearchStrategy[list[Any]]:
    from agentmesh.core.consensus import codec

    messages = [c for c in codec._SCHEMA if not c.__name__.startswith("Persist")]
    return st.sampled_from(messages).flatmap(
        lambda cls: _plain(cls).map(lambda plain, cls=cls: [codec._TAGS[cls], *plain])
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_shaped())
def test_well_shaped_messages_with_hostile_fields_never_crash_the_replica(frame: list[Any]) -> None:
    try:
        message = decode(cbor.encode(frame))
    except CodecError:
        return  # only where the depth cap left a required nested object out
    _feed(message)
