"""PBFT consensus among an elected validator committee (docs/consensus.md)."""

from .committee import Committee, select_committee
from .config import ConsensusConfig
from .durable import DurableState
from .messages import CommitCertificate, Entry
from .pbft import Replica
from .proofs import verify_certificate

__all__ = [
    "CommitCertificate",
    "Committee",
    "ConsensusConfig",
    "DurableState",
    "Entry",
    "Replica",
    "select_committee",
    "verify_certificate",
]
