"""`RoundsMachine`: one agent's part in federated rounds (sans-I/O, core/node.py contract).

The committee's decided log is the single source of truth: the host feeds every
decided batch to `on_decided`, and each entry takes effect only if it is valid
against the log before it (a pure function of that prefix, so every honest
agent applies the same entries). Consensus' `validate_entry` hook is stateless,
so it only checks the shape (`entries.is_well_formed`); the recomputation gate
is a second decided entry: validators propose `round_validate` only after they
recomputed the aggregate bit for bit, and a result commits when f + 1 of them
did (at least one honest validator reproduced it). See docs/federated-rounds.md.

Outputs: `Send(peer, UpdateOffer | FetchRequest)`, `Event("send_blob", to, data)`,
`Event("propose", entry)`, `Event("train", round, model, deadline_ms)`,
`Event("round_started" | "round_committed" | "round_aborted" | "model" |
"finished" | "evidence", ...)`.

Bridged devices (docs/microcontrollers.md): a cohort gateway may carry up to
`device_offers_per_gateway_max` offers per round signed by its devices' derived
identities (`UpdateOffer.via` = the gateway). Each is a separate contribution, so
the aggregation rule weighs each device as one vote; their blobs come from the
gateway. Only cohort members' own offers count toward `contributors_min` and the
early close, so devices never stand in for missing members.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.messages import VerifyFn
from agentmesh.core.limits import RESULT_CONTRIBUTORS_MAX
from agentmesh.core.node import InvariantViolation, MachineBase, Signer

from .compute import ComputeError, aggregate_model, vector
from .config import RoundsConfig
from .entries import (
    KIND_ABORT,
    KIND_VALIDATE,
    ROUND_KINDS,
    EntryError,
    RoundResult,
    RoundStart,
    RoundVote,
    UpdateOffer,
    decode_entry,
    sha256,
    sign_device_offer,
    sign_offer,
    sign_result,
    sign_vote,
)
from .epochs import EpochRoles
from .roles import Genesis, aggregator_order


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Please send me the blob with this sha-256 (an update or a model)."""

    digest: bytes


@dataclass
class _Fetch:
    targets: tuple[str, ...]
    next_ms: int
    attempt: int = 0


@dataclass
class _Round:
    """The open round: offers, update bytes, candidate results and votes."""

    number: int
    base: bytes
    aggregators: tuple[str, ...]
    started_ms: int
    close_ms: int
    cohort: frozenset[str]  # the epoch's roles when the round started (fixed for the round)
    committee: frozenset[str]
    vote_quorum: int
    epoch: int = 0
    offers: dict[str, UpdateOffer] = field(default_factory=dict)
    updates: dict[bytes, bytes] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)  # trainers whose update was unusable
    candidates: dict[bytes, RoundResult] = field(default_factory=dict)
    votes: dict[bytes, list[str]] = field(default_factory=dict)
    abort_votes: list[str] = field(default_factory=list)
    computed: dict[bytes, bytes] = field(default_factory=dict)
    heard: dict[bytes, RoundResult] = field(default_factory=dict)  # proposed, maybe undecided
    to_validate: list[bytes] = field(default_factory=list)
    validated: set[bytes] = field(default_factory=set)
    votes_cast: dict[str, int] = field(default_factory=dict)  # validator -> validate votes
    proposed: bool = False
    abort_sent: bool = False
    trained: bool = False


class RoundsMachine(MachineBase):
    """Train, offer, aggregate, validate, commit; one round at a time."""

    def __init__(
        self,
        signer: Signer,
        verify: VerifyFn,
        genesis: Genesis,
        config: RoundsConfig,
        initial_model: bytes,
        rng: random.Random,
    ) -> None:
        super().__init__(signer.peer_id, rng)
        if sha256(initial_model) != genesis.initial_model:
            raise ValueError("initial model bytes do not match the genesis digest")
        self.signer = signer
        self.verify = verify
        self.genesis = genesis
        self.genesis_id = genesis.genesis_id
        self.config = config
        self.epoch = 0  # roles of the latest committed epoch; a round keeps its start's roles
        self.cohort_order = genesis.cohort
        self.cohort = frozenset(genesis.cohort)
        self.committee = frozenset(genesis.committee)
        self.vote_quorum = genesis.vote_quorum
        self.epoch_aggregators: tuple[str, ...] | None = None  # None: the genesis rotation
        self.global_digest = genesis.initial_model
        self.models: OrderedDict[bytes, bytes] = OrderedDict({self.global_digest: initial_model})
        self.closed_round = 0
        self.current: _Round | None = None
        self.early: dict[str, UpdateOffer] = {}  # offers for the next round, before its start
        self.unclaimed: OrderedDict[bytes, bytes] = OrderedDict()
        self.fetches: dict[bytes, _Fetch] = {}
        self.start_proposed = 0
        self.train_pending = False
        self.now_ms = 0

    # -- host inputs ----------------------------------------------------------------

    @property
    def is_validator(self) -> bool:
        return self.node_id in self.committee

    @property
    def finished(self) -> bool:
        return self.closed_round >= self.config.rounds_total

    def start(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self._propose_next_start()

    def on_decided(self, entries: Iterable[Entry], now_ms: int) -> None:
        """Apply a decided batch, in log order (only round entries matter here)."""
        self.now_ms = now_ms
        for entry in entries:
            if entry.kind not in ROUND_KINDS:
                continue
            try:
                decoded = decode_entry(entry)
            except EntryError:
                self.count("ignored_malformed_entry")
                continue
            if isinstance(decoded, RoundStart):
                self._apply_start(decoded)
            elif isinstance(decoded, RoundResult):
                self._apply_result(decoded)
            else:
                self._apply_vote(decoded)
        self._progress()

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self.now_ms = now_ms
        if isinstance(message, UpdateOffer):
            self._on_offer(message, sender)
        elif isinstance(message, RoundResult):
            self._on_result_heard(message, sender)
        elif isinstance(message, FetchRequest):
            self._on_fetch(message, sender)
        else:
            self.count("dropped_unknown_message")
        self._progress()

    def on_blob(self, sender: str, data: bytes, now_ms: int) -> None:
        """A blob from `sender` (the transport verified its sha-256 in transit)."""
        self.now_ms = now_ms
        if len(data) != self.config.params * 4:
            self.count("dropped_blob_size")
            return
        digest = sha256(data)
        wanted = self.fetches.pop(digest, None) is not None
        if self._accept_model_blob(digest, data):
            pass
        elif self._accept_update_blob(digest, data):
            pass
        elif not wanted:
            self.unclaimed[digest] = data
            while len(self.unclaimed) > self.config.unclaimed_blobs_max:
                self.unclaimed.popitem(last=False)
                self.count("dropped_unclaimed_blob")
        self._progress()

    def on_trained(self, round_number: int, delta: bytes, samples: int, now_ms: int) -> None:
        """The host's local training for `round_number` produced `delta` from `samples` rows."""
        self.now_ms = now_ms
        current = self.current
        if current is None or current.number != round_number or self.node_id in current.offers:
            self.count("late_training_dropped")
            return
        samples = max(1, min(samples, self.config.samples_max))
        digest = sha256(delta)
        offer = sign_offer(self.signer, self.genesis_id, round_number, digest, samples)
        current.offers[self.node_id] = offer
        current.updates[digest] = delta
        self._publish_offer(current, offer, delta)
        self._progress()

    def on_device_trained(
        self, round_number: int, device: Signer, delta: bytes, samples: int, now_ms: int
    ) -> None:
        """A bridged device's update, trained here from its samples: offer it, carried by us."""
        self.now_ms = now_ms
        current = self.current
        if current is None or current.number != round_number or device.peer_id in current.offers:
            self.count("late_device_training_dropped")
            return
        samples = max(1, min(samples, self.config.device_samples_max))
        offer = sign_device_offer(device, self.genesis_id, round_number, sha256(delta), samples,
                                  self.node_id)  # fmt: skip
        reason = self._device_offer_refusal(offer, current.cohort, current.offers)
        if reason is not None:
            self.count(f"device_offer_not_sent_{reason}")
            return
        current.offers[offer.trainer] = offer
        current.updates[offer.digest] = delta
        self.count("device_offers_sent")
        self._publish_offer(current, offer, delta)
        self._progress()

    def _publish_offer(self, current: _Round, offer: UpdateOffer, delta: bytes) -> None:
        targets = set(current.aggregators) | current.committee
        for peer in sorted(targets - {self.node_id}):
            self.emit("send_blob", to=peer, data=delta)
            self.send(peer, offer)

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        for digest, fetch in list(self.fetches.items()):
            if now_ms >= fetch.next_ms:
                target = fetch.targets[fetch.attempt % len(fetch.targets)]
                fetch.attempt += 1
                fetch.next_ms = now_ms + self.config.fetch_retry_ms
                self.send(target, FetchRequest(digest))
        self._progress()

    def next_deadline(self) -> int | None:
        deadlines = [fetch.next_ms for fetch in self.fetches.values()]
        current = self.current
        if current is not None:
            position = self._aggregator_position(current)
            if position is not None and not current.proposed:
                deadlines.append(current.close_ms + position * self.config.takeover_ms)
            if self.node_id in current.committee and not current.abort_sent:
                deadlines.append(current.started_ms + self.config.abort_after_ms)
        return min(deadlines, default=None)

    def set_epoch(self, roles: EpochRoles, now_ms: int) -> None:
        """A new epoch was committed: its roles apply from the next round start on."""
        self.now_ms = now_ms
        self.epoch = roles.epoch
        self.cohort_order = roles.cohort
        self.cohort = frozenset(roles.cohort)
        self.committee = frozenset(roles.committee)
        self.vote_quorum = (len(roles.committee) - 1) // 3 + 1
        self.epoch_aggregators = roles.aggregators
        self.early = {t: o for t, o in self.early.items() if o.carrier in self.cohort}
        self.count("epochs")
        self.emit("epoch", epoch=roles.epoch, committee=roles.committee, cohort=roles.cohort,
                  aggregators=roles.aggregators)  # fmt: skip
        if self.current is None:
            self.start_proposed = 0  # the expected start changed (its cohort): propose it
            self._propose_next_start()
        self._progress()

    def resume(self, now_ms: int) -> None:
        """After a restart's replay of the decided log (its outbox already dropped).

        The round still open in the replayed log is sat out for training and
        aggregation: this agent may have offered an update or proposed a result
        in it before the crash, and a second, different one would contradict
        what it signed. Validating (deterministic) and the abort timer go on. The
        next start is proposed again (the replay's proposals were dropped).
        """
        self.now_ms = now_ms
        current = self.current
        if current is not None:
            self.train_pending = False
            current.trained = True
            current.proposed = True
        self.start_proposed = 0
        for fetch in self.fetches.values():
            fetch.next_ms = min(fetch.next_ms, now_ms)

    # -- decided entries (deterministic: same prefix, same effect) ---------------------

    def _apply_start(self, start: RoundStart) -> None:
        if self.current is not None or start != self._expected_start():
            self.count("ignored_start")
            return
        if self.epoch_aggregators is None:
            ranked = aggregator_order(self.genesis, start.round)
        else:
            ranked = self.epoch_aggregators
        order = ranked[: self.config.aggregators_per_round]
        current = _Round(start.round, start.model, order, self.now_ms,
                         self.now_ms + start.window_ms, self.cohort, self.committee,
                         self.vote_quorum, self.epoch)  # fmt: skip
        self.current = current
        early, self.early = self.early, {}
        for offer in early.values():
            if offer.round != start.round:
                continue
            if offer.via is None and offer.trainer in current.cohort:
                self._store_offer(current, offer)
            elif (
                offer.via is not None
                and self._device_offer_refusal(offer, current.cohort, current.offers) is None
            ):
                self._store_offer(current, offer)
        self.count("rounds_started")
        self.emit("round_started", round=start.round, model=start.model, aggregators=order,
                  deadline_ms=current.close_ms, epoch=self.epoch)  # fmt: skip
        if self.node_id in self.cohort:
            self.train_pending = True
        if start.model not in self.models:
            self._fetch(start.model, tuple(sorted(self.committee - {self.node_id})), delay=False)

    def _expected_start(self) -> RoundStart | None:
        number = self.closed_round + 1
        if number > self.config.rounds_total:
            return None
        return RoundStart(number, self.global_digest, self.cohort_order, self.config.window_ms)

    def _apply_result(self, result: RoundResult) -> None:
        current = self.current
        if current is None or result.round != current.number:
            self.count("ignored_result_other_round")
            return
        if not self._valid_result(current, result):
            self.count("ignored_invalid_result")
            self.emit("evidence", reason="invalid_result", sender=result.aggregator)
            return
        if result.model in current.candidates or any(
            r.aggregator == result.aggregator for r in current.candidates.values()
        ):
            self.count("duplicate_result")  # one candidate per aggregator: bounded
            return
        current.candidates[result.model] = result
        self._want_validation(current, result)
        self._maybe_commit(current, result.model)

    def _want_validation(self, current: _Round, result: RoundResult) -> None:
        current.heard.setdefault(result.model, result)
        known = current.validated | set(current.to_validate)
        if self.node_id in current.committee and result.model not in known:
            current.to_validate.append(result.model)

    def _on_result_heard(self, result: RoundResult, sender: str) -> None:
        """An aggregator's result before it is decided: validators start recomputing at once."""
        current = self.current
        if current is None or result.round != current.number or sender != result.aggregator:
            self.count("dropped_result_other_round")
            return
        if any(r.aggregator == sender for r in current.heard.values()):
            self.count("duplicate_result")  # one proposal per aggregator: bounded
            return
        if not self._valid_result(current, result):
            self.count("dropped_invalid_result")
            self.emit("evidence", reason="invalid_result", sender=sender)
            return
        self._want_validation(current, result)

    def _maybe_commit(self, current: _Round, model: bytes) -> None:
        """Commit once the result and f + 1 validate votes for it are decided (any order)."""
        if model in current.candidates and len(current.votes.get(model, ())) >= (
            current.vote_quorum
        ):
            self._commit(current, current.candidates[model])

    def _valid_result(self, current: _Round, result: RoundResult) -> bool:
        trainers = [offer.trainer for offer in result.contributors]
        members = [o for o in result.contributors if o.via is None]
        return (
            result.aggregator in current.aggregators
            and result.rule == self.config.rule.name
            and len(members) >= self._contributors_min(current)
            and trainers == sorted(set(trainers))
            and all(o.trainer in current.cohort for o in members)
            and all(1 <= o.samples <= self.config.samples_max for o in members)
            and self._devices_admissible(current.cohort, result.contributors)
            and self.verify(result.aggregator, result.payload(self.genesis_id), result.signature)
            and all(o.verify(self.genesis_id, self.verify) for o in result.contributors)
        )

    def _apply_vote(self, vote: RoundVote) -> None:
        current = self.current
        if (
            current is None
            or vote.round != current.number
            or vote.validator not in current.committee
        ):
            self.count("ignored_vote")
            return
        if not self.verify(vote.validator, vote.payload(self.genesis_id), vote.signature):
            self.count("ignored_vote_bad_signature")
            self.emit("evidence", reason="bad_vote_signature", sender=vote.validator)
            return
        if vote.kind == KIND_ABORT:
            if vote.validator not in current.abort_votes:
                current.abort_votes.append(vote.validator)
            if len(current.abort_votes) >= current.vote_quorum:
                self._abort(current)
            return
        cast = current.votes_cast.get(vote.validator, 0)
        voters = current.votes.get(vote.model, [])
        if vote.validator in voters or cast >= self.config.aggregators_per_round:
            self.count("ignored_vote_repeated")  # at most one per possible result: bounded
            return
        current.votes_cast[vote.validator] = cast + 1
        current.votes[vote.model] = [*voters, vote.validator]
        self._maybe_commit(current, vote.model)

    def _commit(self, current: _Round, result: RoundResult) -> None:
        self.closed_round = current.number
        if self.global_digest != current.base:
            self.fetches.pop(self.global_digest, None)  # superseded: nobody may serve it now
        self.fetches.pop(current.base, None)
        self.global_digest = result.model
        self.current = None
        self.train_pending = False
        self._drop_round_fetches(current)
        self.count("rounds_committed")
        voters = tuple(current.votes[result.model])
        self.emit(
            "round_committed",
            round=current.number,
            model=result.model,
            aggregator=result.aggregator,
            validators=voters,
            contributors=tuple((o.trainer, o.samples) for o in result.contributors),
        )
        data = current.computed.get(result.model)
        if data is not None:
            self._add_model(result.model, data)
        elif result.model not in self.models:
            holders = tuple(dict.fromkeys((*voters, result.aggregator)))
            self._fetch(result.model, tuple(p for p in holders if p != self.node_id), delay=False)
        self._after_close()

    def _abort(self, current: _Round) -> None:
        self.closed_round = current.number
        self.current = None
        self.train_pending = False
        self._drop_round_fetches(current)
        self.count("rounds_aborted")
        self.emit("round_aborted", round=current.number, validators=tuple(current.abort_votes))
        self._after_close()

    def _after_close(self) -> None:
        if self.finished:
            self.emit("finished", round=self.closed_round, model=self.global_digest)
        else:
            self._propose_next_start()

    def _propose_next_start(self) -> None:
        """Committee members propose the one start the log allows; equal bodies dedupe."""
        start = self._expected_start()
        if not self.is_validator or start is None or self.start_proposed >= start.round:
            return
        self.start_proposed = start.round
        self.emit("propose", entry=start.entry())

    # -- bridged devices' offers (deterministic: used for results too) ---------------------

    def _device_offer_refusal(
        self, offer: UpdateOffer, cohort: frozenset[str], held: dict[str, UpdateOffer]
    ) -> str | None:
        """Why a device offer may not join `held` (None: it may), without its signature."""
        if offer.via not in cohort:
            return "not_via_cohort"
        if offer.trainer in cohort:
            return "trainer_is_member"
        if not 1 <= offer.samples <= self.config.device_samples_max:
            return "samples"
        carried = sum(1 for o in held.values() if o.via == offer.via and o.trainer != offer.trainer)
        if carried >= self.config.device_offers_per_gateway_max:
            return "over_cap"
        return None

    def _devices_admissible(
        self, cohort: frozenset[str], contributors: tuple[UpdateOffer, ...]
    ) -> bool:
        """Every device contributor is carried by a cohort member, within the caps."""
        held: dict[str, UpdateOffer] = {}
        for offer in contributors:
            if offer.via is None:
                continue
            if self._device_offer_refusal(offer, cohort, held) is not None:
                return False
            held[offer.trainer] = offer
        return True

    # -- messages and blobs -------------------------------------------------------------

    def _on_offer(self, offer: UpdateOffer, sender: str) -> None:
        current = self.current
        if current is not None and offer.round == current.number:
            target: _Round | None = current
            cohort, held = current.cohort, current.offers
        elif current is None and offer.round == self.closed_round + 1:
            target, cohort, held = None, self.cohort, self.early
        else:
            self.count("dropped_offer_other_round")
            return
        if offer.via is not None:
            if not self._device_offer_acceptable(offer, sender, cohort, held):
                return
        elif not 1 <= offer.samples <= self.config.samples_max:
            self.count("dropped_offer_samples")
            return
        elif offer.trainer != sender or offer.trainer not in cohort:
            self.count("dropped_offer_not_trainer")
            return
        if not offer.verify(self.genesis_id, self.verify):
            self.count("dropped_offer_bad_signature")
            self.emit("evidence", reason="bad_offer_signature", sender=sender)
            return
        if target is None:
            self.early[offer.trainer] = offer  # bounded: cohort members and capped devices
            return
        self._store_offer(target, offer)

    def _device_offer_acceptable(
        self, offer: UpdateOffer, sender: str, cohort: frozenset[str], held: dict[str, UpdateOffer]
    ) -> bool:
        if offer.via != sender:
            self.count("dropped_device_offer_wrong_carrier")
            return False
        reason = self._device_offer_refusal(offer, cohort, held)
        if reason is not None:
            self.count(f"dropped_device_offer_{reason}")
            return False
        return True

    def _store_offer(self, current: _Round, offer: UpdateOffer) -> None:
        known = current.offers.get(offer.trainer)
        if known is not None:
            if known.digest != offer.digest:
                self.count("equivocating_offer")
                self.emit("evidence", reason="two_updates_in_a_round", sender=offer.trainer)
            return
        current.offers[offer.trainer] = offer
        data = self.unclaimed.pop(offer.digest, None)
        if data is not None:
            self._accept_update_blob(offer.digest, data)
        elif self._needs_updates(current):
            self._fetch(offer.digest, (offer.carrier,), delay=True)

    def _needs_updates(self, current: _Round) -> bool:
        return self.node_id in current.committee or self.node_id in current.aggregators

    def _accept_update_blob(self, digest: bytes, data: bytes) -> bool:
        current = self.current
        if current is None:
            return False
        owners = [o.trainer for o in current.offers.values() if o.digest == digest]
        listed = any(o.digest == digest for r in current.heard.values() for o in r.contributors)
        if not owners and not listed:
            return False
        try:
            vector(data, self.config.params)
        except ComputeError:
            current.rejected.update(owners)
            self.count("rejected_update_not_finite")
            for owner in owners:
                self.emit("evidence", reason="update_not_finite", sender=owner)
            return True
        current.updates[digest] = data
        return True

    def _accept_model_blob(self, digest: bytes, data: bytes) -> bool:
        if digest != self.global_digest and (self.current is None or digest != self.current.base):
            return False
        if digest not in self.models:
            self._add_model(digest, data)
        return True

    def _add_model(self, digest: bytes, data: bytes) -> None:
        self.models[digest] = data
        while len(self.models) > self.config.models_kept_max:
            self.models.popitem(last=False)
        self.emit("model", model=digest, data=data, round=self.closed_round)

    def _on_fetch(self, request: FetchRequest, sender: str) -> None:
        digest = request.digest
        data = self.models.get(digest)
        current = self.current
        if data is None and current is not None:
            data = current.updates.get(digest) or current.computed.get(digest)
        if data is None:
            self.count("fetch_miss")
            return
        self.count("fetch_served")
        self.emit("send_blob", to=sender, data=data)

    def _fetch(self, digest: bytes, targets: tuple[str, ...], delay: bool) -> None:
        if not targets or digest in self.fetches:
            return
        if len(self.fetches) >= self.config.fetches_max:
            self.count("dropped_fetch_table_full")
            return
        first = self.now_ms + (self.config.fetch_retry_ms if delay else 0)
        self.fetches[digest] = _Fetch(targets, first)

    def _drop_round_fetches(self, current: _Round) -> None:
        for offer in current.offers.values():
            self.fetches.pop(offer.digest, None)
        for result in current.heard.values():
            for offer in result.contributors:
                self.fetches.pop(offer.digest, None)

    # -- the work a round asks of this agent ------------------------------------------------

    def _progress(self) -> None:
        current = self.current
        if current is None:
            return
        if self.train_pending and current.base in self.models:
            self.train_pending = False
            current.trained = True
            self.emit("train", round=current.number, model=self.models[current.base],
                      deadline_ms=current.close_ms)  # fmt: skip
        self._maybe_aggregate(current)
        if self.current is current:
            self._maybe_validate(current)
        if self.current is current and self.node_id in current.committee and not current.abort_sent:
            if self.now_ms >= current.started_ms + self.config.abort_after_ms:
                current.abort_sent = True
                vote = sign_vote(self.signer, self.genesis_id, KIND_ABORT, current.number, b"")
                self.emit("propose", entry=vote.entry())

    def _contributors_min(self, current: _Round) -> int:
        """The configured floor (absolute: a shrunken cohort below it aborts its rounds)."""
        return self.config.contributors_min

    def _aggregator_position(self, current: _Round) -> int | None:
        if self.node_id not in current.aggregators:
            return None
        return current.aggregators.index(self.node_id)

    def _usable_offers(self, current: _Round) -> list[UpdateOffer]:
        return sorted(
            (o for o in current.offers.values()
             if o.digest in current.updates and o.trainer not in current.rejected),
            key=lambda o: o.trainer,
        )  # fmt: skip

    def _maybe_aggregate(self, current: _Round) -> None:
        position = self._aggregator_position(current)
        if position is None or current.proposed or current.base not in self.models:
            return
        usable = self._usable_offers(current)
        members = [o for o in usable if o.via is None]
        devices_max = max(0, RESULT_CONTRIBUTORS_MAX - len(members))
        devices = [o for o in usable if o.via is not None][:devices_max]
        usable = sorted([*members, *devices], key=lambda o: o.trainer)
        pending = any(o.digest not in current.updates and o.trainer not in current.rejected
                      for o in current.offers.values())  # fmt: skip
        everyone = len(members) == len(current.cohort) and not pending
        due = current.close_ms + position * self.config.takeover_ms
        if not ((position == 0 and everyone) or self.now_ms >= due):
            return
        if len(members) < self._contributors_min(current):
            return  # nothing to aggregate yet: the abort timer ends the round if none come
        current.proposed = True
        inputs = [(current.updates[o.digest], o.samples) for o in usable]
        try:
            model = aggregate_model(self.models[current.base], inputs, self.config.rule,
                                    self.config.params)  # fmt: skip
        except ComputeError as error:
            self.count("aggregation_failed")
            self.emit("aggregation_failed", round=current.number, reason=str(error))
            return
        current.computed[sha256(model)] = model
        result = sign_result(self.signer, self.genesis_id, current.number, sha256(model),
                             self.config.rule.name, tuple(usable))  # fmt: skip
        self.count("results_proposed")
        self.emit("propose", entry=result.entry())
        for peer in sorted(current.committee - {self.node_id}):
            self.send(peer, result)  # validators recompute while consensus orders it
        self._want_validation(current, result)

    def _maybe_validate(self, current: _Round) -> None:
        if not current.to_validate or current.base not in self.models:
            return
        for model in list(current.to_validate):
            result = current.heard[model]
            missing = [o for o in result.contributors if o.digest not in current.updates]
            if missing:
                for offer in missing:
                    holders = (result.aggregator, offer.carrier)
                    self._fetch(offer.digest, tuple(p for p in holders if p != self.node_id),
                                delay=False)  # fmt: skip
                continue
            current.to_validate.remove(model)
            current.validated.add(model)
            self._validate(current, result)

    def _validate(self, current: _Round, result: RoundResult) -> None:
        inputs = [(current.updates[o.digest], o.samples) for o in result.contributors]
        try:
            model = aggregate_model(self.models[current.base], inputs, self.config.rule,
                                    self.config.params)  # fmt: skip
        except ComputeError:
            model = b""
        if sha256(model) != result.model:
            self.count("refused_irreproducible_result")
            self.emit("evidence", reason="irreproducible_result", sender=result.aggregator)
            return
        current.computed[result.model] = model
        vote = sign_vote(self.signer, self.genesis_id, KIND_VALIDATE, current.number, result.model)
        self.count("validations_proposed")
        self.emit("propose", entry=vote.entry())

    # -- queries ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        current = self.current
        return {
            "closed_round": self.closed_round,
            "global_model": self.global_digest.hex(),
            "open_round": None if current is None else current.number,
            "offers": 0 if current is None else len(current.offers),
            "validator": self.is_validator,
            "epoch": self.epoch,
            "finished": self.finished,
        }

    def check_invariants(self) -> None:
        config = self.config
        problems = []
        if len(self.models) > config.models_kept_max:
            problems.append("models above the bound")
        if len(self.unclaimed) > config.unclaimed_blobs_max:
            problems.append("unclaimed blobs above the bound")
        if len(self.fetches) > config.fetches_max:
            problems.append("fetches above the bound")
        offers_max = len(self.cohort) * (1 + config.device_offers_per_gateway_max)
        if len(self.early) > offers_max:
            problems.append("early offers above the cohort and its devices")
        current = self.current
        if current is not None:
            if len(current.offers) > len(current.cohort) * (
                1 + config.device_offers_per_gateway_max
            ):
                problems.append("more offers than trainers and their devices")
            if current.number != self.closed_round + 1:
                problems.append("open round is not the next one")
        if self.closed_round > config.rounds_total:
            problems.append("closed more rounds than configured")
        if problems:
            raise InvariantViolation(f"{self.node_id}: " + "; ".join(problems))
