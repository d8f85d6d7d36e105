# Board-specific parts, each behind one small function. The unix port (tests, CI)
# gets a simulated sensor and no Wi-Fi; ESP32 and Pico W use their real ones.
import gc
import os
import sys

UNIX = sys.platform in ("linux", "darwin")


def network_up(cfg):
    """Join Wi-Fi (boards) or nothing (unix port: the host's network is up)."""
    if UNIX or not cfg.get("wifi_ssid"):
        return
    import time

    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["wifi_ssid"], cfg.get("wifi_password", ""))
        for _ in range(200):
            if wlan.isconnected():
                break
            time.sleep_ms(100)
    if not wlan.isconnected():
        raise OSError("wifi: could not join " + cfg["wifi_ssid"])


def ram_bytes():
    gc.collect()
    return gc.mem_free() + gc.mem_alloc()


def mem_free():
    return gc.mem_free()


def flash_bytes():
    try:
        st = os.statvfs("/")
    except (OSError, AttributeError):
        return 0
    return st[0] * st[2]


def random_bytes(n):
    try:
        return os.urandom(n)
    except (AttributeError, NotImplementedError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))


def sensors():
    """Names of the sensors read_sensor understands on this board."""
    if UNIX:
        return ["sim_temp"]
    if sys.platform == "esp32":
        return ["mcu_temp"]
    if sys.platform == "rp2":
        return ["core_temp"]
    return []


_state = [20.0]


def read_sensor(name, seed):
    """One reading as a float (degrees C for the temperature sensors)."""
    if name == "mcu_temp":
        import esp32

        return (esp32.raw_temperature() - 32) / 1.8
    if name == "core_temp":
        import machine

        volts = machine.ADC(4).read_u16() * 3.3 / 65535
        return 27 - (volts - 0.706) / 0.001721
    # sim_temp: a bounded random walk, different per device (seeded by its id).
    import random

    random.seed(seed + len(name))
    _state[0] = min(40.0, max(0.0, _state[0] + (random.getrandbits(8) - 128) / 256))
    return _state[0]


def join_path(base_file, name):
    """`name` beside the config file (unix port) or at the root of the flash."""
    if name.startswith("/"):
        return name
    cut = base_file.rfind("/")
    return name if cut < 0 else base_file[: cut + 1] + name
