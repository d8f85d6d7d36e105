"""Roles on demand: a pure, deterministic assignment from the committed view (docs/roles.md)."""

from agentmesh.core.roles.assign import assign_roles, renegotiate
from agentmesh.core.roles.assignment import (
    Assignment,
    assignment_digest,
    committee_candidates,
    coordinator,
)
from agentmesh.core.roles.capability import (
    capability_score,
    change_reason,
    may_aggregate,
    may_train,
    may_validate,
    settle,
)
from agentmesh.core.roles.config import (
    AGGREGATOR,
    COORDINATOR,
    ROLE_NAMES,
    TRAINER,
    VALIDATOR,
    RolesConfig,
    RolesError,
    committee_size,
)
from agentmesh.core.roles.takeover import Churn, Takeover, churn, takeover, trainer_aggregator

__all__ = [
    "AGGREGATOR",
    "COORDINATOR",
    "ROLE_NAMES",
    "TRAINER",
    "VALIDATOR",
    "Assignment",
    "Churn",
    "RolesConfig",
    "RolesError",
    "Takeover",
    "assign_roles",
    "assignment_digest",
    "capability_score",
    "change_reason",
    "churn",
    "committee_candidates",
    "committee_size",
    "coordinator",
    "may_aggregate",
    "may_train",
    "may_validate",
    "renegotiate",
    "settle",
    "takeover",
    "trainer_aggregator",
]
