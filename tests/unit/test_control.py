"""The control socket: real Unix socket, JSON lines, clear errors."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agentmesh.edge.control import ControlError, ControlServer, request, socket_path


async def _status(req: Mapping[str, Any]) -> dict[str, Any]:
    return {"self": {"peer_id": "x", "verbose": req.get("verbose", False)}}


def test_request_reaches_handler(tmp_path: Path) -> None:
    async def scenario() -> tuple[Any, int]:
        server = ControlServer(tmp_path, {"status": _status})
        await server.start()
        mode = stat.S_IMODE(socket_path(tmp_path).stat().st_mode)
        try:
            return await request(tmp_path, "status", verbose=True), mode
        finally:
            await server.close()

    result, mode = asyncio.run(scenario())
    assert result == {"self": {"peer_id": "x", "verbose": True}}
    assert mode == 0o600
    assert not socket_path(tmp_path).exists()


def test_unknown_command_and_garbage(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        server = ControlServer(tmp_path, {"status": _status})
        await server.start()
        try:
            with pytest.raises(ControlError, match="unknown command 'nope'"):
                await request(tmp_path, "nope")
            reader, writer = await asyncio.open_unix_connection(str(socket_path(tmp_path)))
            writer.write(b"\xff\xfe not json\n")
            await writer.drain()
            answer = await reader.readline()
            writer.close()
            return answer
        finally:
            await server.close()

    assert b"not JSON" in asyncio.run(scenario())


def test_no_agent_running_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no agent is running"):
        asyncio.run(request(tmp_path, "status"))
