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
        """A complete frame (bytes) when `byte` ends one, else None."""
        if byte == END:
            frame = None
            if self.n and not self.discarding and not self.escaped:
                frame = bytes(self.buf[: self.n])
            elif self.escaped and not self.discarding:
                self.dropped += 1
            self.n = 0
            self.escaped = False
            self.discarding = False
            return frame
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
        self.pending = b""
        self.at = 0
        self.poller = None
        if not hasattr(stream, "any"):
            import select

            self.poller = select.poll()
            self.poller.register(stream, select.POLLIN)

    def send(self, datagram):
        self.stream.write(encode(datagram))

    def _more(self):
        # UART.any() says how much is buffered; a unix tty file would block on a
        # short read, so there it is one byte per poll.
        if self.poller is None:
            count = self.stream.any()
            return self.stream.read(min(count, 64)) if count else None
        if self.poller.poll(0):
            return self.stream.read(1)
        return None

    def recv(self, size_max):
        decoder = self.decoder
        budget = READ_BUDGET
        while budget > 0:
            if self.at >= len(self.pending):
                data = self._more()
                if not data:
                    break
                self.pending = data
                self.at = 0
            while self.at < len(self.pending):
                byte = self.pending[self.at]
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
