# Labelled samples for the gateway-side trainer (federated rounds; docs/microcontrollers.md).
# Imported only when the config names a samples_file, so devices without one keep the heap.
import asyncio

import amesh_wire as wire


async def send_loop(agent, path):
    # Records of `sample_floats` little-endian float32 features and one label byte, sent
    # once each after the welcome; on a board the file is where labelled readings are
    # logged. One record buffer for the run: no allocation per sample but the datagram.
    floats = agent.cfg.get("sample_floats", 64)
    every_ms = agent.cfg.get("sample_ms", 100)
    record = bytearray(floats * 4 + 1)
    view = memoryview(record)
    sent = 0
    try:
        f = open(path, "rb")
    except OSError:
        print("amesh: no samples file", path)
        return
    with f:
        while True:
            await asyncio.sleep_ms(every_ms)
            if not agent.welcomed:
                continue
            if f.readinto(record) != len(record):
                break
            agent.send(wire.SAMPLE, {"x": bytes(view[: floats * 4]), "y": record[floats * 4]})
            sent += 1
    agent.stats["samples"] = sent
    print("amesh: samples sent", sent)
