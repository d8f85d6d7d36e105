"""Bounds of the microcontroller bridge: datagrams, tables, rates, transfers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """Every table and rate of the gateway has its bound here; units last."""

    datagram_bytes_max: int = 1_400  # fits an Ethernet MTU with IP/UDP headers
    devices_max: int = 4_096  # devices with in-memory state (registry entries beyond: refused)
    device_id_chars_max: int = 32
    messages_per_s: float = 50.0  # per device, after authentication
    message_burst: int = 100
    unknown_lookups_per_s: float = 200.0  # registry look-ups for ids not yet in memory
    unknown_lookup_burst: int = 200
    chunk_bytes: int = 1_024  # model bytes per downlink datagram
    transfer_window_chunks: int = 8  # unacknowledged chunks in flight per device
    chunk_retry_ms: int = 250
    chunk_retries_max: int = 20  # per chunk, then the transfer fails
    params_max: int = 10_000  # float32 parameters of one model
    layers_max: int = 8  # layer sizes of one MLP (input, hidden..., output)
    layer_width_max: int = 1_024
    infer_pending_per_device_max: int = 16
    infer_timeout_ms: int = 5_000
    floats_per_message_max: int = 256  # readings, inference inputs and outputs
    sensors_max: int = 8
    name_chars_max: int = 16  # sensor and firmware names
    suspect_after_ms: int = 15_000  # no authenticated message for this long: suspect
    dead_after_ms: int = 60_000
    forget_after_ms: int = 600_000  # dead this long: in-memory state dropped
    events_max: int = 10_000  # undrained events for the host; beyond, dropped + counted
    outbox_max: int = 10_000
    counter_flush_ms: int = 1_000  # how stale the persisted replay counters may be
    samples_per_device_max: int = 256  # labelled samples kept per device (newest), for rounds
    sample_label_max: int = 255


DEFAULT_GATEWAY_LIMITS = GatewayLimits()


@dataclass(frozen=True, slots=True)
class BridgeLimits:
    """How bridged devices travel between agents ("gateway.bridged"), and every bound of it."""

    refresh_ms: int = 5_000  # a full, signed list to every live member this often
    change_min_ms: int = 500  # and on a change, but at most this often
    ttl_ms: int = 16_000  # receivers drop a device not refreshed for this long
    loop_ms: int = 250  # the host's check for changes, new members and expiry
    adverts_per_message_max: int = 48  # one envelope stays under ~32 KB
    parts_max: int = 128  # 128 x 48 > devices_max: a full list always fits
    devices_per_gateway_max: int = 4_096
    gateways_max: int = 64
    devices_max: int = 8_192  # over all gateways, in one receiver's table


DEFAULT_BRIDGE_LIMITS = BridgeLimits()
