"""Microcontrollers on a serial line: SLIP framing (RFC 1055) of the bridge datagrams.

The datagrams are exactly those of UDP (cbor + HMAC, docs/microcontrollers.md); SLIP
only delimits them on the byte stream. `SlipDecoder` is sans-I/O and bounded: a frame
longer than the datagram bound or with a bad escape is discarded up to the next END,
so garbage on the line costs only the frame it lands in (resync, RFC 1055 "DEALING
WITH ERRORS"). `SerialLink` opens the tty raw and non-blocking with termios and
registers it with the asyncio loop; its address in the machine is "serial:PATH".
Per-link bounds: a frame rate bucket before the machine (garbage frames never reach the
shared registry look-up budget beyond it), a bounded output buffer, bounded reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
import time
from collections.abc import Callable

from agentmesh.gateway_peer.devices import TokenBucket

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD
ADDRESS_PREFIX = "serial:"
BAUD_DEFAULT = 115_200
READ_BYTES = 4_096
READS_PER_WAKE_MAX = 4  # one reader callback handles at most 16 KB, then yields
OUTPUT_BYTES_MAX = 16_384  # ~1.4 s at 115200 baud; beyond, frames are dropped + counted
FRAMES_PER_S = 100.0  # per link, above one device's 50/s after authentication
FRAME_BURST = 200
REOPEN_MS = 1_000

FrameHandler = Callable[[bytes, str], None]


def slip_encode(frame: bytes) -> bytes:
    """END + escaped frame + END; the leading END flushes line noise (RFC 1055)."""
    escaped = frame.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(
        bytes([END]), bytes([ESC, ESC_END])
    )
    return bytes([END]) + escaped + bytes([END])


class SlipDecoder:
    """Bytes in, complete frames out; never holds more than `frame_bytes_max` bytes."""

    def __init__(self, frame_bytes_max: int) -> None:
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._escaped = False
        self._discarding = False
        self.counters: dict[str, int] = {
            "frames": 0,
            "garbage_bytes": 0,
            "oversize_frames": 0,
            "bad_escapes": 0,
        }

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for byte in data:
            if byte == END:
                self._end(frames)
            elif self._discarding:
                self.counters["garbage_bytes"] += 1
            elif self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    self._append(END)
                elif byte == ESC_ESC:
                    self._append(ESC)
                else:
                    self._discard("bad_escapes", 2)
            elif byte == ESC:
                self._escaped = True
            else:
                self._append(byte)
        return frames

    def _append(self, byte: int) -> None:
        if len(self._buffer) >= self.frame_bytes_max:
            self._discard("oversize_frames", 1)
            return
        self._buffer.append(byte)

    def _discard(self, reason: str, pending_bytes: int) -> None:
        self.counters[reason] += 1
        self.counters["garbage_bytes"] += len(self._buffer) + pending_bytes
        self._buffer.clear()
        self._discarding = True

    def _end(self, frames: list[bytes]) -> None:
        if self._escaped and not self._discarding:  # ESC END: a truncated escape
            self.counters["bad_escapes"] += 1
            self.counters["garbage_bytes"] += len(self._buffer) + 1
        elif self._buffer and not self._discarding:
            frames.append(bytes(self._buffer))
            self.counters["frames"] += 1
        self._buffer.clear()
        self._escaped = False
        self._discarding = False


def open_raw_tty(path: str, baud: int = BAUD_DEFAULT) -> int:
    """A non-blocking fd on `path` in raw mode (8N1, no echo, no flow control)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        # cfmakeraw (termios(3)), spelled out: tty.cfmakeraw needs Python 3.12.
        attrs[0] &= ~(
            termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
            | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF
        )  # fmt: skip
        attrs[1] &= ~termios.OPOST
        attrs[2] &= ~(termios.CSIZE | termios.PARENB | termios.CRTSCTS)
        attrs[2] |= termios.CS8 | termios.CREAD | termios.CLOCAL
        attrs[3] &= ~(
            termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN
        )
        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise ValueError(f"unsupported baud rate {baud}")
        attrs[4] = attrs[5] = speed
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (termios.error, ValueError):
        os.close(fd)
        raise
    return fd


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class SerialLink:
    """One tty carrying SLIP-framed datagrams; reopened after the device goes away."""

    def __init__(
        self,
        path: str,
        on_frame: FrameHandler,
        frame_bytes_max: int,
        baud: int = BAUD_DEFAULT,
    ) -> None:
        self.path = path
        self.address = ADDRESS_PREFIX + path
        self.baud = baud
        self.on_frame = on_frame
        self.decoder = SlipDecoder(frame_bytes_max)
        self.bucket = TokenBucket(FRAMES_PER_S, FRAME_BURST, _monotonic_ms())
        self.counters: dict[str, int] = {
            "opens": 0,
            "open_errors": 0,
            "io_errors": 0,
            "bytes_in": 0,
            "frames_out": 0,
            "rate_limited": 0,
            "output_dropped": 0,
        }
        self._fd: int | None = None
        self._out = bytearray()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"serial {self.path}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._shut()

    def status(self) -> dict[str, object]:
        return {
            "path": self.path,
            "open": self.is_open,
            "counters": {**self.counters, **self.decoder.counters},
        }

    async def _run(self) -> None:
        while True:
            try:
                self._open()
            except (OSError, termios.error, ValueError):
                self.counters["open_errors"] += 1
                await asyncio.sleep(REOPEN_MS / 1000)
                continue
            self._closed.clear()
            await self._closed.wait()
            await asyncio.sleep(REOPEN_MS / 1000)

    def _open(self) -> None:
        fd = open_raw_tty(self.path, self.baud)
        self._fd = fd
        self.counters["opens"] += 1
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def _shut(self) -> None:
        fd, self._fd = self._fd, None
        self._out.clear()
        if fd is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            os.close(fd)
        self._closed.set()

    def _fail(self) -> None:
        # EIO when the other end of a pty closes, ENXIO/ENODEV when a USB adapter goes.
        self.counters["io_errors"] += 1
        self._shut()

    def _on_readable(self) -> None:
        for _ in range(READS_PER_WAKE_MAX):
            if self._fd is None:
                return
            try:
                data = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                self._fail()
                return
            if not data:
                self._fail()
                return
            self.counters["bytes_in"] += len(data)
            for frame in self.decoder.feed(data):
                if self.bucket.take(_monotonic_ms()):
                    self.on_frame(frame, self.address)
                else:
                    self.counters["rate_limited"] += 1
            if len(data) < READ_BYTES:
                return

    def send(self, datagram: bytes) -> None:
        """Queue one framed datagram; dropped and counted when the line is backed up."""
        if self._fd is None:
            self.counters["output_dropped"] += 1
            return
        framed = slip_encode(datagram)
        if len(self._out) + len(framed) > OUTPUT_BYTES_MAX:
            self.counters["output_dropped"] += 1
            return
        was_empty = not self._out
        self._out += framed
        self.counters["frames_out"] += 1
        if was_empty:
            self._flush()

    def _flush(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            written = os.write(fd, self._out)
        except BlockingIOError:
            written = 0
        except OSError as error:
            if error.errno != errno.EAGAIN:
                self._fail()
                return
            written = 0
        del self._out[:written]
        loop = asyncio.get_running_loop()
        if self._out:
            loop.add_writer(fd, self._flush)
        else:
            loop.remove_writer(fd)
