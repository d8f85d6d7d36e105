"""Byte layout on QUIC streams: the stream-type byte, control frames and blob headers.

Every stream is unidirectional and opened by its sender; its first byte says what
it carries (like HTTP/3 stream types, RFC 9114 §6.2):

- CONTROL (0x00): one per connection and direction, a sequence of frames
  `type (1) || length (4, big-endian) || payload`.
- BLOB (0x01): one blob per stream, `size (8, big-endian) || sha-256 (32) || data`.

Decoders are incremental and bounded: a control frame above `frame_bytes_max` is
skipped byte-for-byte as it arrives (never buffered whole) and reported once; a
blob whose declared size is above `blob_bytes_max`, that carries more bytes than
it declared, or whose content does not hash to its digest, is rejected.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

STREAM_CONTROL = 0x00
STREAM_BLOB = 0x01

_FRAME_HEADER = struct.Struct(">BI")
FRAME_HEADER_SIZE_BYTES = _FRAME_HEADER.size
_BLOB_HEADER = struct.Struct(">Q32s")
BLOB_HEADER_SIZE_BYTES = _BLOB_HEADER.size


class FrameType(enum.IntEnum):
    CHALLENGE = 1  # server -> client: nonce
    AUTH = 2  # client -> server: peer id + signature
    ACCEPT = 3  # server -> client: the proof was accepted
    DATA = 4  # either way, once authenticated: an opaque host frame


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """A complete control frame. `frame_type` is an int: unknown types are the caller's call."""

    frame_type: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class FrameOversized:
    """A frame whose declared length was above the limit; its bytes were skipped."""

    frame_type: int
    length: int


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """One control frame."""
    return _FRAME_HEADER.pack(frame_type, len(payload)) + payload


class ControlDecoder:
    """Incremental decoder of one control stream (after its stream-type byte)."""

    __slots__ = ("_buffer", "_frame_bytes_max", "_skip_bytes")

    def __init__(self, frame_bytes_max: int) -> None:
        self._frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._skip_bytes = 0

    def feed(self, data: bytes) -> list[ControlFrame | FrameOversized]:
        """Frames completed by `data`, in order."""
        if not self._buffer and not self._skip_bytes:
            frames = self._whole_frames(data)
            if frames is not None:
                return frames
        out: list[ControlFrame | FrameOversized] = []
        view = memoryview(data)
        if self._skip_bytes:
            skipped = min(self._skip_bytes, len(view))
            self._skip_bytes -= skipped
            view = view[skipped:]
        self._buffer += view
        while len(self._buffer) >= FRAME_HEADER_SIZE_BYTES:
            frame_type, length = _FRAME_HEADER.unpack_from(self._buffer)
            if length > self._frame_bytes_max:
                out.append(FrameOversized(frame_type, length))
                available = len(self._buffer) - FRAME_HEADER_SIZE_BYTES
                skipped = min(length, available)
                del self._buffer[: FRAME_HEADER_SIZE_BYTES + skipped]
                self._skip_bytes = length - skipped
                if self._skip_bytes:
                    # Everything after this point in `data` is part of the skipped frame.
                    break
                continue
            end = FRAME_HEADER_SIZE_BYTES + length
            if len(self._buffer) < end:
                break
            out.append(ControlFrame(frame_type, bytes(self._buffer[FRAME_HEADER_SIZE_BYTES:end])))
            del self._buffer[:end]
        return out

    def _whole_frames(self, data: bytes) -> list[ControlFrame | FrameOversized] | None:
        """The frames of `data` when it holds only whole, allowed frames (the usual
        case: one frame per STREAM frame); None sends it down the buffering path."""
        out: list[ControlFrame | FrameOversized] = []
        offset = 0
        size = len(data)
        while offset < size:
            if size - offset < FRAME_HEADER_SIZE_BYTES:
                return None
            frame_type, length = _FRAME_HEADER.unpack_from(data, offset)
            start = offset + FRAME_HEADER_SIZE_BYTES
            offset = start + length
            if length > self._frame_bytes_max or offset > size:
                return None
            out.append(ControlFrame(frame_type, data[start:offset]))
        return out

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)


def encode_blob_header(size_bytes: int, digest: bytes) -> bytes:
    """The header that opens a blob stream (after the stream-type byte)."""
    return _BLOB_HEADER.pack(size_bytes, digest)


class BlobVerdict(enum.Enum):
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    OVERSIZED = "oversized"  # declared size above the limit
    OVERRUN = "overrun"  # more bytes than declared
    TRUNCATED = "truncated"  # stream ended before the declared size
    DIGEST_MISMATCH = "digest_mismatch"


class BlobDecoder:
    """Incremental receiver of one blob stream (after its stream-type byte)."""

    __slots__ = ("_blob_bytes_max", "_data", "_digest", "_hash", "_header", "size_bytes")

    def __init__(self, blob_bytes_max: int) -> None:
        self._blob_bytes_max = blob_bytes_max
        self._header = bytearray()
        self._data = bytearray()
        self._hash = hashlib.sha256()
        self._digest = b""
        self.size_bytes: int | None = None

    def feed(self, data: bytes, end_stream: bool) -> BlobVerdict:
        """Take more stream bytes; a verdict other than INCOMPLETE is final."""
        view = memoryview(data)
        if self.size_bytes is None:
            needed = BLOB_HEADER_SIZE_BYTES - len(self._header)
            self._header += view[:needed]
            view = view[needed:]
            if len(self._header) < BLOB_HEADER_SIZE_BYTES:
                return BlobVerdict.TRUNCATED if end_stream else BlobVerdict.INCOMPLETE
            self.size_bytes, self._digest = _BLOB_HEADER.unpack(self._header)
            if self.size_bytes > self._blob_bytes_max:
                return BlobVerdict.OVERSIZED
        if len(self._data) + len(view) > self.size_bytes:
            return BlobVerdict.OVERRUN
        self._data += view
        self._hash.update(view)
        if not end_stream:
            return BlobVerdict.INCOMPLETE
        if len(self._data) != self.size_bytes:
            return BlobVerdict.TRUNCATED
        if self._hash.digest() != self._digest:
            return BlobVerdict.DIGEST_MISMATCH
        return BlobVerdict.COMPLETE

    @property
    def buffered_bytes(self) -> int:
        return len(self._data)

    @property
    def digest(self) -> bytes:
        return self._digest

    def take(self) -> bytes:
        """The verified blob (call once, after COMPLETE)."""
        data = bytes(self._data)
        self._data = bytearray()
        return data
