"""The local control socket: `agent status` and friends talk to a running agent.

A Unix domain socket `agent.sock` in the state directory (mode 0600, so only
the owner can steer the agent). One JSON request per line, one JSON response
per line: `{"cmd": "status"}` -> `{"ok": true, "result": {...}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

SOCKET_NAME = "agent.sock"
_REQUEST_BYTES_MAX = 64 * 1024
_RESPONSE_BYTES_MAX = 16 * 1024 * 1024

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """The agent could not be asked (not running, bad answer)."""


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


class ControlServer:
    """Serves named commands on the state directory's control socket."""

    def __init__(self, state_dir: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = socket_path(state_dir)
        self.handlers = dict(handlers)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a killed agent
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=_REQUEST_BYTES_MAX
        )
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            response = await self._answer(line)
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ValueError, ConnectionError):
            pass  # an over-long line or a client that went away: nothing to answer
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a "cmd" string'}
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {request['cmd']!r}"}
        return {"ok": True, "result": await handler(request)}


async def request(state_dir: Path, cmd: str, **args: Any) -> Any:
    """Send one command to the agent running on `state_dir` and return its result."""
    path = socket_path(state_dir)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=_RESPONSE_BYTES_MAX)
    except (FileNotFoundError, ConnectionRefusedError) as error:
        raise ControlError(
            f"no agent is running on state dir {state_dir} (no control socket at {path}); "
            "start one with: agent join --state-dir " + str(state_dir)
        ) from error
    try:
        writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    try:
        response = json.loads(line)
    except json.JSONDecodeError as error:
        raise ControlError("the agent sent an answer that is not JSON") from error
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "the agent refused the request")))
    return response["result"]
