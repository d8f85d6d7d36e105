"""The SWIM + Lifeguard membership machine with admission (sans-I/O, core/node.py).

SWIM (Das, Gupta, Motivala, DSN 2002) and Lifeguard (Dadgar et al., 2018,
arXiv:1707.00788), shaped after HashiCorp memberlist. Layers:

- `view.MembershipView`: the member table and the update rules (alive/suspect/
  dead/left ordered by incarnation, refutation, Lifeguard suspicion timers) and
  infection-style dissemination (piggybacked + fast gossip timer);
- `probing.ProbingMachine`: the probe cycle (ping, ping-req, nack, LHM, buddy);
- this module: admission (join handshake against a seed), commands, the
  contract methods and invariants.

Join handshake (admission, core/admission.py): joiner -> seed `JoinHello(nonce)`;
seed -> joiner `JoinChallenge(nonce, proof)`; joiner -> seed
`JoinRequest(credential)`; seed -> joiner `JoinAccept` chunks of its table (a
push-pull sync, as memberlist does on join) or `JoinReject(reason)`. Only the
seed's check puts a new peer in a table; everyone else accepts it because an
admitted member gossiped it. A rejected peer is never added nor gossiped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from agentmesh.core.admission import AdmissionPolicy, AdmissionRejected, JoinContext, VerifyFn
from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.membership.config import MembershipConfig, push_pull_interval_ms
from agentmesh.core.membership.messages import (
    SYNC_CHUNKS_MAX,
    Alive,
    JoinAccept,
    JoinChallenge,
    JoinHello,
    JoinReject,
    JoinRequest,
    Suspect,
    SyncRequest,
    Update,
)
from agentmesh.core.membership.probing import ProbingMachine
from agentmesh.core.membership.table import (
    ADMITTED_VIA,
    ALIVE,
    LEFT,
    LIVE_STATES,
    STATES,
    SUSPECT,
    VIA_CREDENTIAL,
    VIA_MEMBER,
    MembershipSnapshot,
)
from agentmesh.core.membership.view import RandomBytes
from agentmesh.core.node import ContractError, InvariantViolation, Signer

SEEDS_MAX = 16
INVARIANT_SAMPLE = 4  # members checked per check_invariants() call, rotating


@dataclass(slots=True)
class _JoinAttempt:
    seeds: tuple[str, ...]
    attempts: int = 0
    seed: str = ""
    nonce: bytes = b""
    deadline_ms: int = 0
    syncing: bool = False  # accept chunks are arriving from `seed`
    merge: bool = False  # we were already in a mesh: the two views must be merged
    chunks_seen: set[int] = field(default_factory=set)


class MembershipMachine(ProbingMachine):
    """One node's membership: SWIM failure detection, Lifeguard, gossip, admission."""

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
        seed_peer_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            node_id,
            rng,
            policy,
            signer=signer,
            verify=verify,
            config=config,
            incarnation=incarnation,
            capabilities=capabilities,
            snapshot=snapshot,
            random_bytes=random_bytes,
        )
        self._init_probing()
        self._seed_peer_ids = seed_peer_ids  # joined through at start (e.g. after a restart)
        self._join: _JoinAttempt | None = None
        self._pending_joins: dict[str, tuple[bytes, bytes, int]] = {}  # joiner -> nonces, expiry
        self._candidates: dict[str, int] = {}  # discovered, not (yet) members -> first seen ms
        self._handlers[JoinHello] = self._on_join_hello
        self._handlers[JoinChallenge] = self._on_join_challenge
        self._handlers[JoinRequest] = self._on_join_request
        self._handlers[JoinAccept] = self._on_join_accept
        self._handlers[JoinReject] = self._on_join_reject
        self._handlers[SyncRequest] = self._on_sync_request
        self._sync_peer: str | None = None  # the member whose table we asked for
        self._next_sync_ms = 0

    # -- contract ----------------------------------------------------------------------

    def start(self, now_ms: int) -> None:
        self._now_ms = now_ms
        # Stagger the first probe over one period so nodes do not probe in lockstep.
        self._next_probe_ms = now_ms + self.rng.randrange(self.config.probe_interval_ms)
        self._next_sync_ms = now_ms + self.rng.randrange(self._sync_interval_ms())
        if self.incarnation > 0:  # a restart: tell the mesh we are back, above our old life
            self._enqueue(Alive(self.node_id, self.incarnation, self._advert))
        if self._seed_peer_ids:
            self.join(self._seed_peer_ids, now_ms)

    def durable_state(self) -> dict[str, int]:
        """What the host persists: the highest incarnation issued (a restart rejoins above it)."""
        return {"incarnation": self._incarnation_issued_max}

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self._now_ms = now_ms
        handler = self._handlers.get(message.__class__)
        if handler is None:
            self.count("drop_unknown_message")
            self.emit("bad_message", sender=sender, reason="not a membership message")
            return
        handler(message, sender, now_ms)

    def tick(self, now_ms: int) -> None:
        self._now_ms = now_ms
        self._tick_probe(now_ms)
        if self._relays:
            self._tick_relays(now_ms)
        if self._suspicions:
            self._tick_suspicions(now_ms)
        if self._gossip_due_ms is not None:
            self._tick_gossip(now_ms)
        if self._join is not None or self._pending_joins:
            self._tick_join(now_ms)
        if now_ms >= self._next_sync_ms and not self.leaving:
            self._start_sync(now_ms)

    def next_deadline(self) -> int | None:
        deadline = self._probe_deadline()
        others: list[int] = [] if self.leaving else [self._next_sync_ms]
        if self._gossip_due_ms is not None:
            others.append(self._gossip_due_ms)
        if self._relays:
            others.append(min(relay[3] for relay in self._relays.values()))
        if self._suspicions:
            others.append(min(timer.deadline_ms for timer in self._suspicions.values()))
        if self._join is not None:
            others.append(self._join.deadline_ms)
        if self._pending_joins:
            others.append(min(pending[2] for pending in self._pending_joins.values()))
        if others:
            earliest = min(others)
            return earliest if deadline is None or earliest < deadline else deadline
        return deadline

    # -- commands ----------------------------------------------------------------------

    def join(self, seed_peer_ids: list[str] | tuple[str, ...], now_ms: int) -> None:
        """Join the mesh through any of `seed_peer_ids` (tried in turn, with retries)."""
        self._now_ms = now_ms
        seeds = tuple(dict.fromkeys(s for s in seed_peer_ids if s != self.node_id))[:SEEDS_MAX]
        if not seeds:
            raise ContractError("join needs at least one seed other than this node")
        self._join = _JoinAttempt(seeds, merge=self._live > 1)
        self._join_next(now_ms)

    def add_discovered(self, peer_id: str, now_ms: int) -> None:
        """A peer found by mDNS/bootstrap: a join candidate, never a member until admitted."""
        self._now_ms = now_ms
        if peer_id == self.node_id or peer_id in self._members:
            self.count("discovered_known")
            return
        if peer_id not in self._candidates:
            if len(self._candidates) >= self.config.candidates_max:
                self.count("candidates_full_drop")
                return
            self._candidates[peer_id] = now_ms
        if self._join is not None or self.leaving:
            return
        if self._live <= 1:
            self.join(list(self._candidates), now_ms)
            return
        # A peer on the LAN that is not in our table may have formed a separate mesh
        # with others (agents that start together join each other pairwise). Joining
        # through it merges the views: its JoinAccept syncs its members to us and we
        # gossip them on, as memberlist merges clusters by a push-pull with the node.
        self.count("merge_joins")
        self.join([peer_id], now_ms)

    # -- joiner side ---------------------------------------------------------------------

    def _join_next(self, now_ms: int) -> None:
        attempt = self._join
        assert attempt is not None
        if attempt.attempts >= self.config.join_attempts_max:
            self._join = None
            self.emit("join_failed", reason="timeout", seeds=list(attempt.seeds))
            return
        attempt.seed = attempt.seeds[attempt.attempts % len(attempt.seeds)]
        attempt.attempts += 1
        attempt.nonce = self._random_bytes(16)
        attempt.deadline_ms = now_ms + self.config.join_timeout_ms
        attempt.syncing = False
        attempt.chunks_seen.clear()
        self.send(attempt.seed, JoinHello(self.mesh, attempt.nonce))

    def _tick_join(self, now_ms: int) -> None:
        attempt = self._join
        if attempt is not None and now_ms >= attempt.deadline_ms:
            if attempt.syncing:
                self._join = None  # admitted; the rest of the sync was lost, gossip fills it in
            else:
                self._join_next(now_ms)
        expired = [peer for peer, pending in self._pending_joins.items() if pending[2] <= now_ms]
        for peer_id in expired:
            del self._pending_joins[peer_id]
            self.count("join_handshake_expired")

    def _context(self, joiner: str, verifier: str, nonces: tuple[bytes, bytes]) -> JoinContext:
        return JoinContext(joiner, verifier, nonces[0], nonces[1], self._now_ms)

    def _on_join_challenge(self, message: JoinChallenge, sender: str, now_ms: int) -> None:
        attempt = self._join
        if attempt is None or sender != attempt.seed or message.joiner_nonce != attempt.nonce:
            self.count("join_challenge_unexpected")
            return
        context = self._context(self.node_id, sender, (attempt.nonce, message.nonce))
        try:
            if message.mesh != self.mesh:
                raise AdmissionRejected("wrong_mesh", f"seed is in mesh {message.mesh!r}")
            self.policy.check_verifier_proof(context, message.proof)
            credential = self.policy.credential(context)
        except AdmissionRejected as rejection:
            self.count("join_seed_rejected")
            self.emit("join_seed_rejected", seed=sender, reason=rejection.reason)
            self._join_next(now_ms)
            return
        request = JoinRequest(self.mesh, attempt.nonce, self.incarnation, self._advert, credential)
        self.send(sender, request)

    def _on_join_accept(self, message: JoinAccept, sender: str, now_ms: int) -> None:
        attempt = self._join
        if attempt is None and sender == self._sync_peer and sender in self._members:
            for update in message.updates:  # anti-entropy answer from a member
                self._apply_synced(update)
            return
        if attempt is None or sender != attempt.seed or message.mesh != self.mesh:
            self.count("join_accept_unexpected")
            return
        if not attempt.syncing:
            attempt.syncing = True
            self._candidates.clear()
            self.emit("joined", seed=sender)
        attempt.deadline_ms = now_ms + self.config.join_timeout_ms
        if message.your_incarnation > self.incarnation:
            self._refute(message.your_incarnation)  # the mesh remembers a later life of ours
        if message.chunk in attempt.chunks_seen or message.chunks > SYNC_CHUNKS_MAX:
            self.count("join_accept_duplicate")
            return
        if not attempt.chunks_seen:
            self._enqueue(Alive(self.node_id, self.incarnation, self._advert))
            if attempt.merge:
                self._spread_own_view()
        attempt.chunks_seen.add(message.chunk)
        for update in message.updates:
            self._apply_synced(update, spread=attempt.merge)
        if len(attempt.chunks_seen) >= message.chunks:
            self._join = None

    def _spread_own_view(self) -> None:
        """Merging two meshes: gossip our members so the seed's side learns them too."""
        for member in list(self._members.values()):
            if member.peer_id != self.node_id and member.state in LIVE_STATES:
                self._enqueue(Alive(member.peer_id, member.incarnation, member.advert))
        self.count("merges")

    def _apply_synced(self, update: Update, spread: bool = False) -> None:
        """A record from the seed's table: the seed vouches for it (it is a member).

        Not re-gossiped when new to us (the mesh knows its members, only we did not),
        except when merging two meshes: then our old mesh has not heard of them either.
        """
        if isinstance(update, Alive):
            self._apply_alive(update, VIA_MEMBER, spread=spread)
        elif isinstance(update, Suspect):
            if update.peer_id not in self._members:
                self._apply_alive(
                    Alive(update.peer_id, update.incarnation), VIA_MEMBER, spread=spread
                )
            self._apply_suspect(update)
        else:
            self.count("sync_update_ignored")  # seeds sync live members only

    def _on_join_reject(self, message: JoinReject, sender: str, now_ms: int) -> None:
        attempt = self._join
        if attempt is None or sender != attempt.seed:
            self.count("join_reject_unexpected")
            return
        self._join = None
        self.emit("join_rejected", seed=sender, reason=message.reason)

    # -- anti-entropy (memberlist push-pull) -------------------------------------------

    def _sync_interval_ms(self) -> int:
        return push_pull_interval_ms(self.config.push_pull_interval_ms, self._live)

    def _start_sync(self, now_ms: int) -> None:
        self._next_sync_ms = now_ms + self._sync_interval_ms()
        partners = self._random_members(1, exclude=None)
        self._sync_peer = partners[0] if partners else None
        if self._sync_peer is not None:
            self.send(self._sync_peer, SyncRequest(self.mesh))
            self.count("syncs")

    def _on_sync_request(self, message: SyncRequest, sender: str, now_ms: int) -> None:
        if message.mesh != self.mesh or not self._is_live_member(sender):
            self.count("sync_from_non_member")
            return
        self._send_sync(sender)

    # -- seed side -------------------------------------------------------------------------

    def _on_join_hello(self, message: JoinHello, sender: str, now_ms: int) -> None:
        if message.mesh != self.mesh:
            self._reject(sender, "wrong_mesh")
            return
        if self.leaving:
            self.count("join_while_leaving")
            return
        if (
            sender not in self._pending_joins
            and len(self._pending_joins) >= self.config.pending_joins_max
        ):
            self.count("pending_joins_full_drop")
            return
        nonce = self._random_bytes(16)
        self._pending_joins[sender] = (message.nonce, nonce, now_ms + self.config.join_timeout_ms)
        proof = self.policy.verifier_proof(
            self._context(sender, self.node_id, (message.nonce, nonce))
        )
        self.send(sender, JoinChallenge(self.mesh, message.nonce, nonce, proof))

    def _on_join_request(self, message: JoinRequest, sender: str, now_ms: int) -> None:
        pending = self._pending_joins.get(sender)
        if pending is None or pending[0] != message.nonce:
            self.count("join_request_unexpected")
            return
        del self._pending_joins[sender]
        context = self._context(sender, self.node_id, (pending[0], pending[1]))
        try:
            if message.mesh != self.mesh:
                raise AdmissionRejected("wrong_mesh", f"joiner asks for mesh {message.mesh!r}")
            self.policy.admit(message.credential, context, self._is_live_member)
        except AdmissionRejected as rejection:
            self._reject(sender, rejection.reason)
            return
        advert = message.advert if message.advert and message.advert.peer_id == sender else None
        self._apply_alive(Alive(sender, message.incarnation, advert), VIA_CREDENTIAL)
        self.count("admitted")
        self.emit("member_admitted", peer_id=sender)
        self._send_sync(sender)

    def _is_live_member(self, peer_id: str) -> bool:
        member = self._members.get(peer_id)
        return member is not None and member.state in LIVE_STATES

    def _reject(self, peer_id: str, reason: str) -> None:
        self.send(peer_id, JoinReject(self.mesh, reason))
        self.count("admission_rejected")
        self.emit("admission_rejected", peer_id=peer_id, reason=reason)
        if peer_id in self._members:
            return  # admitted before; a failed re-admission does not evict it
        if peer_id not in self._rejected and len(self._rejected) >= self.config.rejected_cache_max:
            del self._rejected[next(iter(self._rejected))]
        self._rejected[peer_id] = reason

    def _send_sync(self, joiner: str) -> None:
        """Push our table to the admitted joiner in bounded chunks (memberlist push-pull)."""
        updates: list[Update] = []
        for member in self._members.values():
            if member.state == ALIVE:
                updates.append(Alive(member.peer_id, member.incarnation, member.advert))
            elif member.state == SUSPECT:
                updates.append(Suspect(member.peer_id, member.incarnation, self.node_id))
        joiner_record = self._members.get(joiner)
        joiner_incarnation = joiner_record.incarnation if joiner_record is not None else 0
        size = self.config.join_sync_chunk
        chunks = min(SYNC_CHUNKS_MAX, -(-len(updates) // size))
        for chunk in range(chunks):
            part = tuple(updates[chunk * size : (chunk + 1) * size])
            self.send(joiner, JoinAccept(self.mesh, joiner_incarnation, part, chunk, chunks))

    # -- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """O(1) checks plus a rotating sample of members (see check_invariants_full).

        The simulator calls this after every step, so it must stay cheap at 10,000
        members; the full scan runs in tests and in the scenario's global checks."""
        own = self._members.get(self.node_id)
        if (
            own is None
            or own.incarnation != self.incarnation
            or own.state != (LEFT if self.leaving else ALIVE)
            or self.incarnation != self._incarnation_issued_max
            or len(self._members) > self.config.members_max
            or len(self._queue) > self.config.gossip_queue_max
            or len(self._relays) > self.config.indirect_probes_max
            or len(self._pending_joins) > self.config.pending_joins_max
        ):
            self._check_self_and_bounds()  # the precise (slower) check names the failure
        for peer_id, timer in self._suspicions.items():
            member = self._members.get(peer_id)
            if member is None or member.state != SUSPECT or member.incarnation != timer.incarnation:
                raise InvariantViolation(f"suspicion timer for {peer_id} whose record is {member}")
        order = self._probe_order
        if len(order):
            cursor = (self._invariant_cursor + 1) % len(order)
            self._invariant_cursor = cursor
            member = self._members.get(order.entry(cursor))
            if member is not None:
                self._check_member(member)

    def check_invariants_full(self) -> None:
        """Every invariant over the whole table (O(members)): for tests and global checks."""
        self._check_self_and_bounds()
        live = 0
        for member in self._members.values():
            self._check_member(member)
            live += member.state in LIVE_STATES
        if live != self._live:
            raise InvariantViolation(f"live count {self._live} but {live} live members")
        for subject in self._queue.subjects():
            if subject not in self._members:
                raise InvariantViolation(f"gossip queued about non-member {subject}")

    def _check_self_and_bounds(self) -> None:
        config = self.config
        own = self._members.get(self.node_id)
        expected_state = LEFT if self.leaving else ALIVE
        if own is None or own.state != expected_state or own.incarnation != self.incarnation:
            raise InvariantViolation(f"own record {own} is not {expected_state}@{self.incarnation}")
        if self.incarnation != self._incarnation_issued_max:
            raise InvariantViolation("own incarnation is below the highest one issued")
        bounds = (
            (len(self._members), config.members_max, "members"),
            (len(self._queue), config.gossip_queue_max, "gossip queue"),
            (len(self._suspicions), config.suspicions_max, "suspicions"),
            (len(self._pending_joins), config.pending_joins_max, "pending joins"),
            (len(self._candidates), config.candidates_max, "candidates"),
            (len(self._relays), config.indirect_probes_max, "relays"),
            (len(self._rejected), config.rejected_cache_max, "rejected"),
        )
        for size, bound, name in bounds:
            if size > bound:
                raise InvariantViolation(f"{name} table holds {size} > {bound}")
        if not 0 <= self._awareness.score <= self._awareness.max_score:
            raise InvariantViolation("local health multiplier out of bounds")
        for peer_id, timer in self._suspicions.items():
            member = self._members.get(peer_id)
            if member is None or member.state != SUSPECT or member.incarnation != timer.incarnation:
                raise InvariantViolation(f"suspicion timer for {peer_id} whose record is {member}")

    def _check_member(self, member: Any) -> None:
        if member.via not in ADMITTED_VIA or member.state not in STATES:
            raise InvariantViolation(
                f"member {member.peer_id} has via={member.via} state={member.state}"
            )
        if member.peer_id in self._rejected:
            raise InvariantViolation(f"rejected peer {member.peer_id} is in the member table")
        advert = member.advert
        if advert is not None and advert.peer_id != member.peer_id:
            raise InvariantViolation(f"member {member.peer_id} holds another peer's advert")
