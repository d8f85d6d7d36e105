"""Membership: SWIM failure detection with Lifeguard, gossip of capability adverts, admission."""

from agentmesh.core.membership.capabilities import (
    AdvertError,
    Capabilities,
    CapabilityAdvert,
    sign_advert,
)
from agentmesh.core.membership.config import MembershipConfig
from agentmesh.core.membership.machine import MembershipMachine
from agentmesh.core.membership.messages import (
    Ack,
    Alive,
    Dead,
    Gossip,
    JoinAccept,
    JoinChallenge,
    JoinHello,
    JoinReject,
    JoinRequest,
    Left,
    MembershipWireError,
    Nack,
    Ping,
    PingReq,
    Suspect,
    SyncRequest,
    message_from_wire,
)
from agentmesh.core.membership.table import ALIVE, DEAD, LEFT, SUSPECT, Member, MembershipSnapshot

__all__ = [
    "ALIVE",
    "DEAD",
    "LEFT",
    "SUSPECT",
    "Ack",
    "AdvertError",
    "Alive",
    "Capabilities",
    "CapabilityAdvert",
    "Dead",
    "Gossip",
    "JoinAccept",
    "JoinChallenge",
    "JoinHello",
    "JoinReject",
    "JoinRequest",
    "Left",
    "Member",
    "MembershipConfig",
    "MembershipMachine",
    "MembershipSnapshot",
    "MembershipWireError",
    "Nack",
    "Ping",
    "PingReq",
    "Suspect",
    "SyncRequest",
    "message_from_wire",
    "sign_advert",
]
