# The device agent: hello, heartbeats, readings, model chunks, inference, on MicroPython asyncio.
import asyncio
import errno
import gc
import socket
import time
from array import array

import amesh_board as board
import amesh_wire as wire
from amesh_mlp import ModelSlot, allocate_blocks

FIRMWARE = "amesh-0.1"
RECV_BYTES = 1500


async def readable(sock):
    # What asyncio's own streams await: the scheduler polls the socket for us.
    yield asyncio.core._io_queue.queue_read(sock)


def log(*parts):
    print("amesh:", *parts)


class Agent:
    def __init__(self, cfg, link, slot, sock, samples=None):
        self.cfg = cfg
        self.samples = samples  # amesh_samples, when the config names a samples_file
        self.link = link
        self.slot = slot
        self.sock = sock
        self.welcomed = False
        self.gateway = None
        self.started_ms = time.ticks_ms()
        self.seed = sum(cfg["device_id"].encode())
        self.stats = {"sent": 0, "received": 0, "send_errors": 0, "bad_body": 0}

    def send(self, msg_type, body):
        datagram = self.link.seal(msg_type, body)
        try:
            self.sock.send(datagram)
            self.stats["sent"] += 1
        except OSError:
            self.stats["send_errors"] += 1

    def hello(self):
        self.send(
            wire.HELLO,
            {
                "fw": FIRMWARE,
                "ram": board.ram_bytes(),
                "flash": board.flash_bytes(),
                "sens": board.sensors(),
                "slots": 1,
                "pmax": self.slot.params_max,
                "hb": self.cfg.get("heartbeat_ms", 5000),
            },
        )

    def on_datagram(self, data):
        try:
            message = self.link.open(data)
        except MemoryError:
            # A fragmented heap: drop this datagram (the gateway resends), keep running.
            self.stats["oom"] = self.stats.get("oom", 0) + 1
            return
        if message is None:
            return
        self.stats["received"] += 1
        msg_type, body = message
        try:
            if msg_type == wire.WELCOME:
                if not self.welcomed:
                    log("welcomed by", body["g"])
                self.welcomed = True
                self.gateway = body["g"]
            elif msg_type == wire.MODEL_CHUNK:
                ack = self.slot.on_chunk(body)
                self.send(wire.CHUNK_ACK, ack)
                if ack["ok"] and body["i"] == body["k"] - 1 or ack.get("e"):
                    log("model", body["m"], "ok" if ack["ok"] else ack.get("e", "incomplete"))
            elif msg_type == wire.INFER_REQUEST:
                self.send(wire.INFER_RESULT, self.infer(body))
        except (KeyError, TypeError, ValueError, IndexError):
            self.stats["bad_body"] += 1
        except MemoryError:
            self.stats["oom"] = self.stats.get("oom", 0) + 1

    def infer(self, body):
        slot = self.slot
        if slot.model_id == 0 or body["m"] not in (0, slot.model_id):
            return {"m": body["m"], "r": body["r"], "e": "no_model"}
        x = array("f", body["x"])
        if len(x) != slot.layers[0]:
            return {"m": slot.model_id, "r": body["r"], "e": "bad_input"}
        y = slot.forward(x)
        return {"m": slot.model_id, "r": body["r"], "y": bytes(y)}

    async def receive_loop(self):
        sock = self.sock
        # A serial link (amesh_serial.SerialSock) is polled through its stream.
        stream = getattr(sock, "stream", sock)
        while True:
            await readable(stream)
            # Drain what is queued. recv, not the stream read/readinto of asyncio,
            # which concatenate datagrams to fill their buffer.
            for _ in range(16):
                try:
                    data = sock.recv(RECV_BYTES)
                except OSError as error:
                    if error.errno != errno.EAGAIN:
                        # ICMP port unreachable while the gateway is down: pause.
                        await asyncio.sleep_ms(200)
                    break
                except MemoryError:
                    self.stats["oom"] = self.stats.get("oom", 0) + 1
                    gc.collect()
                    break
                self.on_datagram(data)
                data = None
                gc.collect()

    async def hello_loop(self):
        every_ms = self.cfg.get("hello_ms", 30000)
        while True:
            self.welcomed = False
            self.hello()
            waited = 0
            # Until welcomed, say hello again every second (packets can be lost).
            while waited < every_ms:
                await asyncio.sleep_ms(100)
                waited += 100
                if not self.welcomed and waited % 1000 == 0:
                    self.hello()

    async def heartbeat_loop(self):
        every_ms = self.cfg.get("heartbeat_ms", 5000)
        while True:
            await asyncio.sleep_ms(every_ms)
            uptime = time.ticks_diff(time.ticks_ms(), self.started_ms)
            self.send(
                wire.HEARTBEAT, {"up": uptime, "free": board.mem_free(), "m": self.slot.model_id}
            )

    async def reading_loop(self):
        every_ms = self.cfg.get("reading_ms", 2000)
        names = board.sensors()
        while True:
            await asyncio.sleep_ms(every_ms)
            if not self.welcomed:
                continue
            for name in names:
                value = array("f", [board.read_sensor(name, self.seed)])
                t_us = time.ticks_us() & 0x3FFFFFFF
                self.send(wire.READING, {"s": name, "t": t_us, "v": bytes(value)})

    async def run(self, run_ms):
        tasks = [
            asyncio.create_task(self.receive_loop()),
            asyncio.create_task(self.hello_loop()),
            asyncio.create_task(self.heartbeat_loop()),
            asyncio.create_task(self.reading_loop()),
        ]
        if self.samples:
            tasks.append(
                asyncio.create_task(self.samples.send_loop(self, self.cfg["samples_file"]))
            )
        if run_ms:
            await asyncio.sleep_ms(run_ms)
            for task in tasks:
                task.cancel()
            log("stopped", self.stats, self.link.rejected)
        else:
            await asyncio.gather(*tasks)


def open_socket(gateway):
    host, port = gateway.rsplit(":", 1)
    addr = socket.getaddrinfo(host, int(port))[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)  # the kernel then drops datagrams from anyone but the gateway
    sock.setblocking(False)
    return sock


def start(cfg, config_path):
    import binascii

    sock = None
    if cfg.get("link", "udp") == "serial":
        # Before the model blocks: compiling needs heap, and the frame buffer then
        # comes out of the blocks rather than out of the reserve.
        import amesh_serial

        gc.collect()
        sock = amesh_serial.open_serial(cfg, wire.DATAGRAM_MAX)
    samples = None
    if cfg.get("samples_file"):
        import amesh_samples as samples  # before the blocks too: compiling needs heap

        gc.collect()
        cfg["samples_file"] = board.join_path(config_path, cfg["samples_file"])
    # Heap kept free for datagrams, decoding and inference.
    reserve = cfg.get("heap_reserve_bytes", 14336)
    slot = ModelSlot(allocate_blocks(cfg.get("params_max", 10000), reserve))
    board.network_up(cfg)
    key = binascii.unhexlify(cfg["key"])
    counters = wire.CounterStore(
        board.join_path(config_path, cfg.get("counter_file", "amesh_counter")),
        cfg.get("counter_step", 100),
    )
    link = wire.Link(cfg["device_id"], key, board.random_bytes(8), counters)
    if sock is None:
        sock = open_socket(cfg["gateway"])
    agent = Agent(cfg, link, slot, sock, samples)
    log("device", cfg["device_id"], "params_max", slot.params_max, "free", board.mem_free())
    asyncio.run(agent.run(cfg.get("run_ms", 0)))
