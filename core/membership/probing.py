"""Failure detection: SWIM's probe cycle with Lifeguard's local health and nacks.

Each protocol period (SWIM §3.1) a node pings one member chosen in randomized
round-robin (§4.3). Without an ack within the probe timeout it asks k members to
ping the target for it (PingReq); without any ack by the end of the period it
suspects the target (§4.2). Lifeguard §IV.A: helpers answer Nack when the target
stays silent, and the prober's Local Health Multiplier (LHM) rises when nacks it
expected are missing, or on any failed probe when it had no helpers; it falls on
each successful probe. Interval and timeout are scaled by the LHM. Lifeguard
§IV.C (buddy system): a ping to a suspected member carries the suspicion first,
so the member learns of it at once and can refute.
"""

from __future__ import annotations

from agentmesh.core.membership.messages import Ack, Nack, Ping, PingReq, Suspect
from agentmesh.core.membership.table import ALIVE, LIVE_STATES, SUSPECT, Member
from agentmesh.core.membership.view import MembershipView

NACK_TIMEOUT_FRACTION = 0.8  # Lifeguard §IV.A: helpers nack at 80% of the probe timeout


class _Probe:
    """The probe in flight this period."""

    __slots__ = (
        "end_ms",
        "expected_nacks",
        "indirect_sent",
        "nacks",
        "seq",
        "target",
        "timeout_ms",
    )

    def __init__(self, target: str, seq: int, timeout_ms: int, end_ms: int) -> None:
        self.target = target
        self.seq = seq
        self.timeout_ms = timeout_ms
        self.end_ms = end_ms
        self.indirect_sent = False
        self.expected_nacks = 0
        self.nacks = 0


class ProbingMachine(MembershipView):
    """MembershipView plus the SWIM/Lifeguard probe cycle."""

    def _init_probing(self) -> None:
        self._next_probe_ms = 0
        self._probe: _Probe | None = None
        # our ping seq -> (origin, origin's seq, target, nack at ms): PingReqs we serve
        self._relays: dict[int, tuple[str, int, str, int]] = {}
        self._seq = 0
        self._handlers[Ping] = self._on_ping
        self._handlers[PingReq] = self._on_ping_req
        self._handlers[Ack] = self._on_ack
        self._handlers[Nack] = self._on_nack

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _probe_deadline(self) -> int | None:
        probe = self._probe
        deadline = None if self.leaving else self._next_probe_ms
        if probe is not None:
            due = probe.end_ms if probe.indirect_sent else probe.timeout_ms
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def _relay_deadline(self) -> int | None:
        if not self._relays:
            return None
        return min(relay[3] for relay in self._relays.values())

    # -- the cycle -------------------------------------------------------------------

    def _tick_probe(self, now_ms: int) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now_ms >= probe.timeout_ms:
                self._send_indirect(probe)
            if now_ms >= probe.end_ms:
                self._probe = None
                self._probe_failed(probe)
        if not self.leaving and now_ms >= self._next_probe_ms:
            self._reap(now_ms)
            if self._probe is not None:  # LHM shrank mid-period: close the old probe first
                failed, self._probe = self._probe, None
                self._probe_failed(failed)
            self._start_probe(now_ms)
            self._next_probe_ms = now_ms + self._awareness.scale(self.config.probe_interval_ms)

    def _next_target(self) -> Member | None:
        if self._live <= 1:
            return None
        members = self._members
        for _ in range(2 * len(self._probe_order) + 2):
            candidate = self._probe_order.next_candidate(self.rng, members)
            if candidate is None:
                return None
            member = members.get(candidate)
            if member is not None and candidate != self.node_id and member.state in LIVE_STATES:
                return member
        return None

    def _start_probe(self, now_ms: int) -> None:
        target = self._next_target()
        if target is None:
            return
        seq = self._next_seq()
        piggyback = self.config.piggyback_updates_max
        if target.state == SUSPECT:
            # Lifeguard §IV.C buddy system: tell the suspect first, whatever the queue holds.
            buddy = Suspect(target.peer_id, target.incarnation, self.node_id)
            updates = (buddy, *self._take_updates(piggyback - 1))
        else:
            updates = self._take_updates(piggyback)
        self.send(target.peer_id, Ping(seq, target.peer_id, updates))
        self.count("probes")
        config, awareness = self.config, self._awareness
        self._probe = _Probe(
            target.peer_id,
            seq,
            now_ms + awareness.scale(config.probe_timeout_ms),
            now_ms + awareness.scale(config.probe_interval_ms),
        )

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        helpers = self._random_members(self.config.indirect_checks, exclude=probe.target)
        for helper in helpers:
            updates = self._take_updates(self.config.piggyback_updates_max)
            self.send(helper, PingReq(probe.seq, probe.target, updates))
        probe.expected_nacks = len(helpers)
        self.count("indirect_probes")

    def _probe_failed(self, probe: _Probe) -> None:
        # Lifeguard §IV.A: missing nacks mean *we* may be the slow one.
        if probe.expected_nacks > 0:
            self._awareness.apply(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply(1)
        self.count("probes_failed")
        member = self._members.get(probe.target)
        if member is not None and member.state in LIVE_STATES:
            self._apply_suspect(Suspect(probe.target, member.incarnation, self.node_id))

    def _probe_succeeded(self) -> None:
        self._probe = None
        self._awareness.apply(-1)

    # -- handlers ----------------------------------------------------------------------

    def _on_ping(self, ping: Ping, sender: str, now_ms: int) -> None:
        if ping.target != self.node_id:
            self.count("ping_misdelivered")
            return
        if sender in self._members:
            self._apply_updates(ping.updates, sender)
            updates = self._take_updates(self.config.piggyback_updates_max)
        else:
            # Answer (so a member we have not heard of yet does not suspect us) but
            # tell a non-member nothing about the mesh.
            self.count("ping_from_non_member")
            updates = ()
        self.send(sender, Ack(ping.seq, updates))

    def _on_ping_req(self, request: PingReq, sender: str, now_ms: int) -> None:
        if sender not in self._members:
            self.count("ping_req_from_non_member")
            return
        self._apply_updates(request.updates, sender)
        if request.target == self.node_id:
            self.send(sender, Ack(request.seq, ()))
            return
        if len(self._relays) >= self.config.indirect_probes_max:
            self.count("relays_full_drop")
            return
        seq = self._next_seq()
        nack_ms = now_ms + int(self.config.probe_timeout_ms * NACK_TIMEOUT_FRACTION)
        self._relays[seq] = (sender, request.seq, request.target, nack_ms)
        updates = self._take_updates(self.config.piggyback_updates_max)
        self.send(request.target, Ping(seq, request.target, updates))

    def _on_ack(self, ack: Ack, sender: str, now_ms: int) -> None:
        self._apply_updates(ack.updates, sender)
        probe = self._probe
        if probe is not None and ack.seq == probe.seq:
            self._probe_succeeded()
            return
        relay = self._relays.get(ack.seq)
        if relay is not None and relay[2] == sender:
            del self._relays[ack.seq]
            origin, origin_seq = relay[0], relay[1]
            self.send(
                origin, Ack(origin_seq, self._take_updates(self.config.piggyback_updates_max))
            )
            return
        self.count("ack_unexpected")

    def _on_nack(self, nack: Nack, sender: str, now_ms: int) -> None:
        probe = self._probe
        if probe is not None and nack.seq == probe.seq and probe.nacks < probe.expected_nacks:
            probe.nacks += 1
        else:
            self.count("nack_unexpected")

    def _tick_relays(self, now_ms: int) -> None:
        if not self._relays:
            return
        expired = [seq for seq, relay in self._relays.items() if relay[3] <= now_ms]
        for seq in expired:
            origin, origin_seq, _, _ = self._relays.pop(seq)
            self.send(origin, Nack(origin_seq))


__all__ = ["ALIVE", "ProbingMachine"]
