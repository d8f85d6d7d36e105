"""The member table and its update rules: the base layer of the membership machine.

SWIM (Das, Gupta, Motivala, DSN 2002) and Lifeguard (Dadgar et al., 2018,
arXiv:1707.00788), shaped after HashiCorp memberlist:

- one probe per protocol period, targets in randomized round-robin (SWIM §4.3);
  direct Ping, then PingReq through k members (§3.1), then suspicion (§4.2);
- suspicion instead of immediate death; a suspected member refutes by raising
  its incarnation (§4.2); Lifeguard's dynamic suspicion timeout shrinks with
  independent confirmations (§IV.B); its Local Health Multiplier scales probe
  interval and timeout (§IV.A, with Nacks from the PingReq helpers); its buddy
  system piggybacks the suspicion on the probe of the suspect (§IV.C);
- infection-style dissemination (§4.1) of Alive / Suspect / Dead / Left updates
  (Alive carries the signed capability advert), piggybacked on probe traffic and
  pushed on a fast gossip timer, each sent lambda * log n times;
- admission: a join runs Hello -> Challenge -> Request -> Accept|Reject against a
  seed, which checks the credential (core/admission.py). Non-members are never
  added nor gossiped: updates are applied only when the sender is in the table.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from agentmesh.core.admission import AdmissionPolicy, VerifyFn
from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.membership.capabilities import Capabilities, CapabilityAdvert, sign_advert
from agentmesh.core.membership.config import MembershipConfig, retransmit_limit
from agentmesh.core.membership.gossip import GossipQueue
from agentmesh.core.membership.messages import (
    Alive,
    Dead,
    Gossip,
    Left,
    Suspect,
    Update,
)
from agentmesh.core.membership.table import (
    ALIVE,
    DEAD,
    LEFT,
    LIVE_STATES,
    SUSPECT,
    VIA_MEMBER,
    VIA_SELF,
    Awareness,
    Member,
    MembershipSnapshot,
    ProbeOrder,
    Suspicion,
)
from agentmesh.core.node import ContractError, MachineBase, Signer

RandomBytes = Callable[[int], bytes]


class MembershipView(MachineBase):
    """One node's view of the mesh: who is in it, in which state, offering what."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        policy: AdmissionPolicy,
        *,
        signer: Signer | None = None,
        verify: VerifyFn = verify_from_peer_id,
        config: MembershipConfig | None = None,
        incarnation: int = 0,
        capabilities: Capabilities | None = None,
        snapshot: MembershipSnapshot | None = None,
        random_bytes: RandomBytes | None = None,
    ) -> None:
        super().__init__(node_id, rng)
        if signer is not None and signer.peer_id != node_id:
            raise ContractError("signer.peer_id must be this machine's node_id")
        if capabilities is not None and signer is None:
            raise ContractError("a capability advert needs a signer")
        self.config = config or MembershipConfig()
        self.policy = policy
        self.mesh = policy.mesh
        self._signer = signer
        self._verify = verify
        # Nonces should be unpredictable: the edge host passes os.urandom here.
        self._random_bytes = random_bytes or (
            lambda size: rng.getrandbits(8 * size).to_bytes(size, "big")
        )
        self.incarnation = incarnation
        self._incarnation_issued_max = incarnation
        self._advert_seq = 0
        self._advert: CapabilityAdvert | None = None
        self._now_ms = 0
        self._members: dict[str, Member] = {}
        self._live = 0
        if snapshot is not None:
            self._members = dict(snapshot.members)
            self._live = snapshot.live
            old = self._members.get(node_id)
            if old is not None:
                self._live -= old.state in LIVE_STATES
                # An alive record of ours needs no outbidding; any other state does (§4.2).
                outbid = old.incarnation + (old.state != ALIVE)
                self.incarnation = max(self.incarnation, outbid)
                self._incarnation_issued_max = self.incarnation
        if capabilities is not None:
            self._sign_advert(capabilities)
        self._members[node_id] = Member(node_id, ALIVE, self.incarnation, self._advert, 0, VIA_SELF)
        self._live += 1
        self._probe_order = ProbeOrder(list(self._members))
        self._queue = GossipQueue(self.config.gossip_queue_max)
        self._suspicions: dict[str, Suspicion] = {}
        self._departed: dict[str, int] = {}  # dead/left peer -> reap at ms
        self._rejected: dict[str, str] = {}  # recently refused admission (not since admitted)
        self._awareness = Awareness(self.config.awareness_max_multiplier)
        self._gossip_phase_ms = rng.randrange(self.config.gossip_interval_ms)
        self._gossip_due_ms: int | None = None
        self.leaving = False
        self._invariant_cursor: int = 0
        self._handlers: dict[type, Callable[[Any, str, int], None]] = {Gossip: self._on_gossip}

    # -- commands --------------------------------------------------------------------

    def advertise(self, capabilities: Capabilities, now_ms: int) -> None:
        """Sign and gossip a new capability advert (replaces the previous one everywhere)."""
        if self._signer is None:
            raise ContractError("advertise needs a signer")
        self._now_ms = now_ms
        self._sign_advert(capabilities)
        self._set(self.node_id, ALIVE, self.incarnation, self._advert, VIA_SELF)
        self._enqueue(Alive(self.node_id, self.incarnation, self._advert))

    def leave(self, now_ms: int) -> None:
        """Graceful leave: gossip Left at once; the host keeps driving us a little while."""
        self._now_ms = now_ms
        if self.leaving:
            return
        self.leaving = True
        self._set(self.node_id, LEFT, self.incarnation, self._advert, VIA_SELF)
        self._enqueue(Left(self.node_id, self.incarnation))
        self._gossip_due_ms = now_ms
        self.emit("left", peer_id=self.node_id)

    def status(self) -> list[dict[str, Any]]:
        """Members as in `agent status --json` (roles are derived elsewhere: empty here)."""
        return [
            {
                "peer_id": member.peer_id,
                "state": member.state,
                "incarnation": member.incarnation,
                "capabilities": member.advert.capabilities.to_status() if member.advert else {},
                "roles": [],
            }
            for member in sorted(self._members.values())
        ]

    def member(self, peer_id: str) -> Member | None:
        return self._members.get(peer_id)

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._members

    @property
    def members_count(self) -> int:
        return len(self._members)

    @property
    def live_count(self) -> int:
        return self._live

    @property
    def local_health(self) -> int:
        """Lifeguard's LHM score (0 = healthy)."""
        return self._awareness.score

    # -- table -----------------------------------------------------------------------

    def _sign_advert(self, capabilities: Capabilities) -> None:
        assert self._signer is not None
        self._advert_seq += 1
        self._advert = sign_advert(self._signer, self.incarnation, self._advert_seq, capabilities)

    def _set(
        self, peer_id: str, state: str, incarnation: int, advert: CapabilityAdvert | None, via: str
    ) -> None:
        """Replace `peer_id`'s record, keeping the live count and departure times right."""
        old = self._members.get(peer_id)
        was_live = old is not None and old.state in LIVE_STATES
        is_live = state in LIVE_STATES
        self._live += is_live - was_live
        self._members[peer_id] = Member(peer_id, state, incarnation, advert, self._now_ms, via)
        if old is None:
            self._probe_order.add(peer_id)
            self._rejected.pop(peer_id, None)  # admitted since (by us or a member who vouches)
        if is_live:
            self._departed.pop(peer_id, None)
        elif peer_id != self.node_id:
            self._departed[peer_id] = self._now_ms + self.config.dead_retention_ms
        if state != SUSPECT:
            self._suspicions.pop(peer_id, None)

    def _enqueue(self, update: Update) -> None:
        """Queue an update for dissemination and arm the fast gossip timer."""
        self._queue.push(update)
        if self._gossip_due_ms is None:
            interval = self.config.gossip_interval_ms
            elapsed = (self._now_ms - self._gossip_phase_ms) % interval
            self._gossip_due_ms = self._now_ms + interval - elapsed

    def _retransmit_limit(self) -> int:
        return retransmit_limit(self.config.retransmit_mult, self._live)

    def _take_updates(self, count_max: int) -> tuple[Update, ...]:
        if not len(self._queue):
            return ()
        return self._queue.take(count_max, self._retransmit_limit())

    def _verified_advert(
        self, advert: CapabilityAdvert | None, current: Member | None
    ) -> CapabilityAdvert | None:
        """The freshest valid advert of `current` and `advert` (which is verified first)."""
        known = current.advert if current is not None else None
        if advert is None or advert is known:
            return known
        if known is not None and advert.order_key <= known.order_key:
            return known
        if not self._verify(advert.peer_id, advert.signed_bytes(), advert.signature):
            self.count("advert_bad_signature")
            self.emit("evidence", kind="advert_bad_signature", peer_id=advert.peer_id)
            return known
        return advert

    # -- applying updates (memberlist aliveNode / suspectNode / deadNode) ------------

    def _apply_updates(self, updates: tuple[Update, ...], sender: str) -> None:
        if not updates:
            return
        if sender not in self._members:
            # Never take membership news from a peer nobody admitted.
            self.count("updates_from_non_member", len(updates))
            return
        for update in updates:
            if isinstance(update, Alive):
                self._apply_alive(update, VIA_MEMBER)
            elif isinstance(update, Suspect):
                self._apply_suspect(update)
            elif isinstance(update, Dead):
                self._apply_departure(update.peer_id, update.incarnation, DEAD, update)
            else:
                self._apply_departure(update.peer_id, update.incarnation, LEFT, update)

    def _apply_alive(self, alive: Alive, via: str, spread: bool = True) -> None:
        peer_id = alive.peer_id
        current = self._members.get(peer_id)
        if peer_id == self.node_id:
            if alive.incarnation > self.incarnation and not self.leaving:
                self._refute(alive.incarnation)  # a previous life of ours: rise above it
            return
        if current is None:
            if len(self._members) >= self.config.members_max:
                self.count("members_full_drop")
                return
            advert = self._verified_advert(alive.advert, None)
            self._set(peer_id, ALIVE, alive.incarnation, advert, via)
            if spread:
                fresh = (
                    alive if advert is alive.advert else Alive(peer_id, alive.incarnation, advert)
                )
                self._enqueue(fresh)
            self.emit("member_joined", peer_id=peer_id, incarnation=alive.incarnation)
            return
        if alive.incarnation > current.incarnation:
            advert = self._verified_advert(alive.advert, current)
            self._set(peer_id, ALIVE, alive.incarnation, advert, current.via)
            self._enqueue(Alive(peer_id, alive.incarnation, advert))
            kind = "member_alive" if current.state in LIVE_STATES else "member_joined"
            self.emit(kind, peer_id=peer_id, incarnation=alive.incarnation)
        elif alive.incarnation == current.incarnation and current.state in LIVE_STATES:
            advert = self._verified_advert(alive.advert, current)
            if advert is not current.advert:  # same life, newer advert
                self._members[peer_id] = current._replace(advert=advert)
                self._enqueue(Alive(peer_id, alive.incarnation, advert))

    def _apply_suspect(self, suspect: Suspect) -> None:
        peer_id = suspect.peer_id
        current = self._members.get(peer_id)
        if current is None or suspect.incarnation < current.incarnation:
            return
        if current.state not in LIVE_STATES:
            return
        if peer_id == self.node_id:
            if not self.leaving:
                self._refute(suspect.incarnation)
            return
        timer = self._suspicions.get(peer_id)
        if current.state == SUSPECT and timer is not None:
            if timer.confirm(suspect.from_peer):
                self._enqueue(suspect)  # new independent confirmation: spread it (§IV.B)
            return
        self._start_suspicion(current, suspect.incarnation, suspect.from_peer)
        self._enqueue(suspect)

    def _start_suspicion(self, current: Member, incarnation: int, from_peer: str) -> None:
        if len(self._suspicions) >= self.config.suspicions_max:
            self.count("suspicions_full_drop")
            return
        self._set(current.peer_id, SUSPECT, incarnation, current.advert, current.via)
        self._suspicions[current.peer_id] = Suspicion(
            self.config, self._live, incarnation, from_peer, self._now_ms
        )
        self.emit("member_suspect", peer_id=current.peer_id, incarnation=incarnation)

    def _apply_departure(self, peer_id: str, incarnation: int, state: str, update: Update) -> None:
        current = self._members.get(peer_id)
        if current is None or incarnation < current.incarnation:
            return
        if current.state not in LIVE_STATES:
            return
        if peer_id == self.node_id:
            if not self.leaving:
                self._refute(incarnation)
            return
        self._set(peer_id, state, incarnation, current.advert, current.via)
        self._enqueue(update)
        self.emit(
            "member_dead" if state == DEAD else "member_left",
            peer_id=peer_id,
            incarnation=incarnation,
        )

    def _refute(self, accused_incarnation: int) -> None:
        """SWIM §4.2: outbid the accusation with a higher incarnation; Lifeguard §IV.A
        counts having to refute as a sign of our own slowness (LHM + 1)."""
        self.incarnation = max(self.incarnation, accused_incarnation) + 1
        self._incarnation_issued_max = max(self._incarnation_issued_max, self.incarnation)
        self._set(self.node_id, ALIVE, self.incarnation, self._advert, VIA_SELF)
        self._enqueue(Alive(self.node_id, self.incarnation, self._advert))
        self._awareness.apply(1)
        self.count("refuted")
        self.emit("refuted", incarnation=self.incarnation)

    def _tick_suspicions(self, now_ms: int) -> None:
        if not self._suspicions:
            return
        expired = [peer for peer, timer in self._suspicions.items() if timer.deadline_ms <= now_ms]
        for peer_id in expired:
            timer = self._suspicions.pop(peer_id)
            current = self._members.get(peer_id)
            if (
                current is None
                or current.state != SUSPECT
                or current.incarnation != timer.incarnation
            ):
                continue
            # SWIM §4.2 "Confirm": the suspicion timed out unrefuted.
            dead = Dead(peer_id, current.incarnation, self.node_id)
            self._apply_departure(peer_id, current.incarnation, DEAD, dead)

    def _reap(self, now_ms: int) -> None:
        """Forget dead/left members after `dead_retention_ms` (they rejoin through admission)."""
        if not self._departed:
            return
        due = [peer for peer, at_ms in self._departed.items() if at_ms <= now_ms]
        for peer_id in due:
            del self._departed[peer_id]
            self._members.pop(peer_id, None)
            self._queue.discard(peer_id)

    # -- gossip ----------------------------------------------------------------------

    def _on_gossip(self, message: Gossip, sender: str, now_ms: int) -> None:
        self._apply_updates(message.updates, sender)

    def _tick_gossip(self, now_ms: int) -> None:
        if self._gossip_due_ms is None or now_ms < self._gossip_due_ms:
            return
        self._gossip_due_ms = None
        targets = self._random_members(self.config.gossip_fanout, exclude=None)
        for target in targets:
            updates = self._take_updates(self.config.gossip_updates_max)
            if not updates:
                break
            self.send(target, Gossip(updates))
            self.count("gossip_sent")
        if len(self._queue) and not (self.leaving and not targets):
            self._enqueue_timer(now_ms)

    def _enqueue_timer(self, now_ms: int) -> None:
        interval = self.config.gossip_interval_ms
        elapsed = (now_ms - self._gossip_phase_ms) % interval
        self._gossip_due_ms = now_ms + interval - elapsed

    def _random_members(self, count: int, exclude: str | None) -> list[str]:
        """Up to `count` distinct live members other than us and `exclude` (rejection sampling)."""
        chosen: list[str] = []
        # `_live` counts us too while we are alive; a leaving node is no longer live
        # itself but must still reach the others with its Left.
        if self._live <= (0 if self.leaving else 1):
            return chosen
        members = self._members
        for _ in range(4 * count + 8):
            peer_id = self._probe_order.random_entry(self.rng)
            if peer_id is None:
                break
            member = members.get(peer_id)
            if (
                member is not None
                and member.state in LIVE_STATES
                and peer_id != self.node_id
                and peer_id != exclude
                and peer_id not in chosen
            ):
                chosen.append(peer_id)
                if len(chosen) >= count:
                    break
        return chosen
