# The bridge datagrams over a serial line, SLIP-framed (RFC 1055), for boards without
# Wi-Fi or a gateway on USB. Same datagrams as UDP; config "link": "serial" with
# "serial_path" (unix port: a tty opened in binary mode) or "uart" (board: UART id),
# "baud" (115200), "tx"/"rx" pins optional.
import errno

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD
READ_BUDGET = 512  # bytes per recv() call, so one call never starves the scheduler
_END = bytes([END])
_ESCAPED_END = bytes([ESC, ESC_END])
_ESCAPED_ESC = bytes([ESC, ESC_ESC])


def write_framed(stream, frame):
    """encode(frame) written in runs: no growing buffer to fragment a small heap."""
    view = memoryview(frame)
    stream.write(_END)
    start = 0
    for i in range(len(frame)):
        byte = frame[i]
        if byte == END or byte == ESC:
            if i > start:
                stream.write(view[start:i])
            stream.write(_ESCAPED_END if byte == END else _ESCAPED_ESC)
            start = i + 1
    if len(frame) > start:
        stream.write(view[start:])
    stream.write(_END)


def encode(frame):
    """END + escaped frame + END; the leading END flushes line noise."""
    out = bytearray([END])
    for byte in frame:
        if byte == END:
            out.append(ESC)
            out.append(ESC_END)
        elif byte == ESC:
            out.append(ESC)
            out.append(ESC_ESC)
        else:
            out.append(byte)
    out.append(END)
    return out


class Decoder:
    """One byte at a time; a frame over `size_max` or with a bad escape is dropped to END."""

    def __init__(self, size_max):
        self.buf = bytearray(size_max)
        self.n = 0
        self.escaped = False
        self.discarding = False
        self.dropped = 0  # frames dropped by the framing (resyncs)

    def feed(self, byte):
        """A complete frame (memoryview) when `byte` ends one, else None."""
        if byte == END:
            n = self.n if not (self.discarding or self.escaped) else 0
            if self.escaped and not self.discarding:
                self.dropped += 1
            # Reset before allocating: a MemoryError below loses this frame only.
            self.n = 0
            self.escaped = False
            self.discarding = False
            # A view, not a copy: valid until the next feed (the agent handles a frame
            # before reading on), and wire.open's slices of it cost nothing.
            return memoryview(self.buf)[:n] if n else None
        if self.discarding:
            return None
        if self.escaped:
            self.escaped = False
            if byte == ESC_END:
                byte = END
            elif byte == ESC_ESC:
                byte = ESC
            else:
                return self._drop()
        elif byte == ESC:
            self.escaped = True
            return None
        if self.n >= len(self.buf):
            return self._drop()
        self.buf[self.n] = byte
        self.n += 1
        return None

    def _drop(self):
        self.dropped += 1
        self.n = 0
        self.discarding = True
        return None


class SerialSock:
    """The socket calls the agent makes (send, recv raising EAGAIN) over a byte stream."""

    def __init__(self, stream, size_max):
        self.stream = stream  # what the asyncio scheduler polls
        self.decoder = Decoder(size_max)
        self.chunk = bytearray(64)  # reads land here: no allocation per byte
        self.filled = 0
        self.at = 0
        self.poller = None
        if not hasattr(stream, "any"):
            import select

            self.poller = select.poll()
            self.poller.register(stream, select.POLLIN)
            self.one = memoryview(self.chunk)[:1]

    def send(self, datagram):
        write_framed(self.stream, datagram)

    def _more(self):
        # UART.any() says how much is buffered; a unix tty file would block on a
        # short read, so there it is one byte per poll.
        if self.poller is None:
            count = self.stream.any()
            return self.stream.readinto(self.chunk, min(count, 64)) or 0 if count else 0
        for _ in self.poller.ipoll(0):  # ipoll: no list allocated per byte
            return self.stream.readinto(self.one) or 0
        return 0

    def recv(self, size_max):
        decoder = self.decoder
        budget = READ_BUDGET
        while budget > 0:
            if self.at >= self.filled:
                self.filled = self._more()
                self.at = 0
                if not self.filled:
                    break
            while self.at < self.filled:
                byte = self.chunk[self.at]
                self.at += 1
                budget -= 1
                frame = decoder.feed(byte)
                if frame is not None:
                    return frame
        raise OSError(errno.EAGAIN)


def open_serial(cfg, size_max):
    path = cfg.get("serial_path")
    if path:
        stream = open(path, "r+b")
    else:
        import machine

        pins = {}
        if "tx" in cfg:
            pins["tx"] = cfg["tx"]
            pins["rx"] = cfg["rx"]
        stream = machine.UART(cfg.get("uart", 1), baudrate=cfg.get("baud", 115200), **pins)
    return SerialSock(stream, size_max)
