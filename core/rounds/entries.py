"""Round entries (decided through PBFT) and round messages, with their signed bytes.

Entries are opaque `Entry(kind, body)` to consensus; the body is deterministic
CBOR (cbor_pure) of a small map. Signed parts use fixed, domain-separated byte
layouts that name the genesis (mesh + committee + cohort + initial model), so a
signature can never be replayed into another mesh or another run.

    round_start    {round, model, cohort, window_ms}       deterministic: unsigned
    round_result   {round, model, rule, aggregator, contributors, sig}
    round_validate {round, model, validator, sig}           a validator recomputed it
    round_abort    {round, validator, sig}                  a validator gives up on it

An update offer `{round, digest, samples, sig}` is signed by its trainer and
copied verbatim into `round_result.contributors`, so an aggregator cannot
invent or alter anyone's update. A bridged device's offer also names `via`, the
cohort gateway that carries it (wire `[trainer, digest, samples, sig, via]`);
its signature (device key, another domain) covers `via` too. Offers without
`via` keep their 4-item form and signed bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.messages import VerifyFn
from agentmesh.core.entry_fields import EntryError as EntryError
from agentmesh.core.entry_fields import digest as _digest
from agentmesh.core.entry_fields import items as _items
from agentmesh.core.entry_fields import peer as _peer
from agentmesh.core.entry_fields import sha256 as sha256
from agentmesh.core.entry_fields import signature as _signature
from agentmesh.core.entry_fields import uint as _uint
from agentmesh.core.node import Signer
from agentmesh.core.wire import cbor_pure

KIND_START = "round_start"
KIND_RESULT = "round_result"
KIND_VALIDATE = "round_validate"
KIND_ABORT = "round_abort"
ROUND_KINDS = frozenset((KIND_START, KIND_RESULT, KIND_VALIDATE, KIND_ABORT))

COHORT_MAX = 256
RULE_CHARS_MAX = 32
ROUND_MAX = 2**32 - 1
SAMPLES_MAX = 2**31 - 1

_DOMAIN_UPDATE = b"agentmesh/round-update/1\x00"
_DOMAIN_DEVICE_UPDATE = b"agentmesh/round-device-update/1\x00"
_DOMAIN_RESULT = b"agentmesh/round-result/1\x00"
_DOMAIN_VOTE = b"agentmesh/round-vote/1\x00"


@dataclass(frozen=True, slots=True)
class UpdateOffer:
    """A trainer's signed claim: my update for `round` is blob `digest`, from `samples` rows."""

    round: int
    trainer: str
    digest: bytes
    samples: int
    signature: bytes
    via: str | None = None  # a bridged device's offer: the cohort gateway that carries it

    @property
    def carrier(self) -> str:
        """The peer that sends this offer and serves its blob."""
        return self.trainer if self.via is None else self.via

    def payload(self, genesis_id: bytes) -> bytes:
        return update_payload(
            genesis_id, self.round, self.trainer, self.digest, self.samples, self.via
        )

    def verify(self, genesis_id: bytes, verify: VerifyFn) -> bool:
        return verify(self.trainer, self.payload(genesis_id), self.signature)

    def to_wire(self) -> list[Any]:
        if self.via is None:
            return [self.trainer, self.digest, self.samples, self.signature]
        return [self.trainer, self.digest, self.samples, self.signature, self.via]


def update_payload(
    genesis_id: bytes,
    round_number: int,
    trainer: str,
    digest: bytes,
    samples: int,
    via: str | None = None,
) -> bytes:
    fixed = genesis_id + struct.pack(">QI", round_number, samples) + digest
    if via is None:
        return _DOMAIN_UPDATE + fixed + trainer.encode()
    return _DOMAIN_DEVICE_UPDATE + fixed + via.encode() + b"\x00" + trainer.encode()


def sign_offer(
    signer: Signer, genesis_id: bytes, round_number: int, digest: bytes, samples: int
) -> UpdateOffer:
    payload = update_payload(genesis_id, round_number, signer.peer_id, digest, samples)
    return UpdateOffer(round_number, signer.peer_id, digest, samples, signer.sign(payload))


def sign_device_offer(
    device: Signer, genesis_id: bytes, round_number: int, digest: bytes, samples: int, via: str
) -> UpdateOffer:
    """A bridged device's offer, signed with its derived identity and carried by `via`."""
    payload = update_payload(genesis_id, round_number, device.peer_id, digest, samples, via)
    return UpdateOffer(round_number, device.peer_id, digest, samples, device.sign(payload), via)


@dataclass(frozen=True, slots=True)
class RoundStart:
    round: int
    model: bytes
    cohort: tuple[str, ...]
    window_ms: int

    def entry(self) -> Entry:
        body = {"round": self.round, "model": self.model, "cohort": list(self.cohort),
                "window_ms": self.window_ms}  # fmt: skip
        return Entry(KIND_START, cbor_pure.encode(body))


@dataclass(frozen=True, slots=True)
class RoundResult:
    round: int
    model: bytes
    rule: str
    aggregator: str
    contributors: tuple[UpdateOffer, ...]  # sorted by trainer id
    signature: bytes

    def payload(self, genesis_id: bytes) -> bytes:
        return result_payload(genesis_id, self.round, self.model, self.rule, self.aggregator,
                              self.contributors)  # fmt: skip

    def entry(self) -> Entry:
        body = {
            "round": self.round,
            "model": self.model,
            "rule": self.rule,
            "aggregator": self.aggregator,
            "contributors": [offer.to_wire() for offer in self.contributors],
            "sig": self.signature,
        }
        return Entry(KIND_RESULT, cbor_pure.encode(body))


def result_payload(
    genesis_id: bytes,
    round_number: int,
    model: bytes,
    rule: str,
    aggregator: str,
    contributors: tuple[UpdateOffer, ...],
) -> bytes:
    hasher = hashlib.sha256(_DOMAIN_RESULT + genesis_id)
    hasher.update(struct.pack(">Q", round_number) + model)
    hasher.update(rule.encode() + b"\x00" + aggregator.encode() + b"\x00")
    for offer in contributors:
        hasher.update(offer.trainer.encode() + b"\x00" + offer.digest)
        hasher.update(struct.pack(">I", offer.samples) + offer.signature)
        if offer.via is not None:  # plain offers hash as before (same result digests)
            hasher.update(b"\x01" + offer.via.encode() + b"\x00")
    return hasher.digest()


def sign_result(
    signer: Signer,
    genesis_id: bytes,
    round_number: int,
    model: bytes,
    rule: str,
    contributors: tuple[UpdateOffer, ...],
) -> RoundResult:
    payload = result_payload(genesis_id, round_number, model, rule, signer.peer_id, contributors)
    return RoundResult(
        round_number, model, rule, signer.peer_id, contributors, signer.sign(payload)
    )


@dataclass(frozen=True, slots=True)
class RoundVote:
    """round_validate (model set) or round_abort (model empty), signed by a validator."""

    kind: str
    round: int
    model: bytes
    validator: str
    signature: bytes

    def payload(self, genesis_id: bytes) -> bytes:
        return vote_payload(genesis_id, self.kind, self.round, self.model, self.validator)

    def entry(self) -> Entry:
        body: dict[str, Any] = {"round": self.round, "validator": self.validator,
                                "sig": self.signature}  # fmt: skip
        if self.kind == KIND_VALIDATE:
            body["model"] = self.model
        return Entry(self.kind, cbor_pure.encode(body))


def vote_payload(
    genesis_id: bytes, kind: str, round_number: int, model: bytes, validator: str
) -> bytes:
    return (_DOMAIN_VOTE + genesis_id + kind.encode() + b"\x00" + struct.pack(">Q", round_number)
            + model + validator.encode())  # fmt: skip


def sign_vote(
    signer: Signer, genesis_id: bytes, kind: str, round_number: int, model: bytes
) -> RoundVote:
    payload = vote_payload(genesis_id, kind, round_number, model, signer.peer_id)
    return RoundVote(kind, round_number, model, signer.peer_id, signer.sign(payload))


RoundEntry = RoundStart | RoundResult | RoundVote


# -- decoding (untrusted: a faulty replica may order any well-sized bytes) -------------


def decode_entry(entry: Entry) -> RoundEntry:
    """The round entry in `entry`; EntryError if its kind or body is malformed."""
    if entry.kind not in ROUND_KINDS:
        raise EntryError(f"not a round entry: {entry.kind!r:.40}")
    try:
        body = cbor_pure.decode(entry.body)
    except cbor_pure.CBORError as error:
        raise EntryError(f"{entry.kind} body is not deterministic CBOR: {error}") from error
    if type(body) is not dict:
        raise EntryError(f"{entry.kind} body is not a map")
    if entry.kind == KIND_START:
        _keys(body, {"round", "model", "cohort", "window_ms"})
        cohort = tuple(_peer(p) for p in _items(body["cohort"], COHORT_MAX))
        return RoundStart(_round(body["round"]), _digest(body["model"]), cohort,
                          _uint(body["window_ms"], 2**31))  # fmt: skip
    if entry.kind == KIND_RESULT:
        _keys(body, {"round", "model", "rule", "aggregator", "contributors", "sig"})
        number = _round(body["round"])
        offers = tuple(_offer(item, number) for item in _items(body["contributors"], COHORT_MAX))
        rule = body["rule"]
        if type(rule) is not str or not 0 < len(rule) <= RULE_CHARS_MAX:
            raise EntryError("bad rule name")
        return RoundResult(number, _digest(body["model"]), rule, _peer(body["aggregator"]),
                           offers, _signature(body["sig"]))  # fmt: skip
    if entry.kind == KIND_VALIDATE:
        _keys(body, {"round", "model", "validator", "sig"})
        model = _digest(body["model"])
    else:
        _keys(body, {"round", "validator", "sig"})
        model = b""
    return RoundVote(entry.kind, _round(body["round"]), model, _peer(body["validator"]),
                     _signature(body["sig"]))  # fmt: skip


def is_well_formed(entry: Entry) -> bool:
    """Stateless check for consensus' `validate_entry`: same answer on every replica."""
    try:
        decode_entry(entry)
    except EntryError:
        return False
    return True


def consensus_entry_validator(entry: Entry) -> bool:
    """`validate_entry` for the Replica: round entries must be well formed, others pass."""
    return is_well_formed(entry) if entry.kind in ROUND_KINDS else True


def offer_from_wire(round_number: int, value: Any) -> UpdateOffer:
    return _offer(value, round_number)


def _keys(body: dict[Any, Any], expected: set[str]) -> None:
    if set(body) != expected:
        raise EntryError(f"fields {sorted(map(str, body))} are not {sorted(expected)}")


def _round(value: Any) -> int:
    number = _uint(value, ROUND_MAX)
    if number < 1:
        raise EntryError("rounds count from 1")
    return number


def _offer(value: Any, round_number: int) -> UpdateOffer:
    items = _items(value, 5)
    if len(items) not in (4, 5):
        raise EntryError("an offer is [trainer, digest, samples, sig] or [..., via]")
    trainer, digest, samples, signature = items[:4]
    via = _peer(items[4]) if len(items) == 5 else None
    return UpdateOffer(round_number, _peer(trainer), _digest(digest),
                       _uint(samples, SAMPLES_MAX), _signature(signature), via)  # fmt: skip
