"""Real zeroconf on 127.0.0.1: agents of one mesh find each other; other meshes are ignored."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from agentmesh.core.identity import Identity
from agentmesh.edge.discovery import FoundPeer, MdnsDiscovery

pytestmark = pytest.mark.integration


async def _collect(discovery: MdnsDiscovery, want: int, timeout_s: float) -> dict[str, FoundPeer]:
    found: dict[str, FoundPeer] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(found) < want and loop.time() < deadline:
        try:
            peer = await asyncio.wait_for(discovery.found.get(), deadline - loop.time())
        except TimeoutError:
            break
        found[peer.peer_id] = peer
    return found


_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from agentmesh.core.identity import Identity
    from agentmesh.edge.discovery import MdnsDiscovery

    async def main():
        me = Identity.from_seed(bytes([200]) * 32)
        d = MdnsDiscovery(me.peer_id, sys.argv[1], 4999, {"class": "edge"}, loopback=True)
        await d.start()
        print(me.peer_id, flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        await d.close()

    asyncio.run(main())
    """
)


def test_agents_of_one_mesh_find_each_other_across_processes() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, "mesh-a", "6"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        other_id = other.stdout.readline().strip()

        async def scenario() -> tuple[dict[str, FoundPeer], dict[str, FoundPeer]]:
            a = Identity.from_seed(bytes([1]) * 32)
            b = Identity.from_seed(bytes([2]) * 32)
            stranger = Identity.from_seed(bytes([3]) * 32)
            disc_a = MdnsDiscovery(a.peer_id, "mesh-a", 4001, {"class": "laptop"}, loopback=True)
            disc_b = MdnsDiscovery(b.peer_id, "mesh-a", 4002, loopback=True)
            disc_s = MdnsDiscovery(stranger.peer_id, "mesh-b", 4003, loopback=True)
            for d in (disc_a, disc_b, disc_s):
                await d.start()
            try:
                found_a = await _collect(disc_a, want=2, timeout_s=5)
                found_s = await _collect(disc_s, want=1, timeout_s=1)
            finally:
                for d in (disc_a, disc_b, disc_s):
                    await d.close()
            return found_a, found_s

        found_a, found_stranger = asyncio.run(scenario())
    finally:
        other.kill()
        other.wait()
    b_id = Identity.from_seed(bytes([2]) * 32).peer_id
    assert set(found_a) == {b_id, other_id}
    assert found_a[other_id].port == 4999
    assert found_a[other_id].host == "127.0.0.1"
    assert found_a[other_id].summary == {"class": "edge"}
    assert found_stranger == {}, "an agent of another mesh must not be reported"
