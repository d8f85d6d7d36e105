"""Split a labelled training set across agents: IID, per-class shards, Dirichlet.

Every partitioner takes the labels of the training set and a seeded
`numpy.random.Generator`, and returns one int64 array of positions into that
training set per agent. Same generator state in, same partition out.
"""

from __future__ import annotations

import numpy as np

DIRICHLET_DRAWS_MAX = 1_000


class PartitionError(ValueError):
    """The requested partition cannot be made from these labels."""


def _check_agents(rows: int, agents: int) -> None:
    if agents < 1:
        raise PartitionError(f"need at least one agent, got {agents}")
    if rows < agents:
        raise PartitionError(f"{rows} rows cannot give each of {agents} agents a row")


def partition_iid(rows: int, agents: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle all rows and deal them into near-equal contiguous chunks."""
    _check_agents(rows, agents)
    order = rng.permutation(rows).astype(np.int64)
    return [chunk.copy() for chunk in np.array_split(order, agents)]


def partition_shards(
    labels: np.ndarray, agents: int, shards_per_agent: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sort rows by label, cut into equal shards, give each agent random shards.

    The pathological non-IID split of McMahan et al. 2017 (§3, "sort by digit
    label, divide into 200 shards, assign each of 100 clients 2 shards").
    """
    labels = np.asarray(labels)
    shards = agents * shards_per_agent
    if shards_per_agent < 1:
        raise PartitionError(f"need at least one shard per agent, got {shards_per_agent}")
    _check_agents(labels.shape[0], shards)
    by_label = np.argsort(labels, kind="stable").astype(np.int64)
    pieces = np.array_split(by_label, shards)
    shard_order = rng.permutation(shards)
    return [
        np.concatenate([pieces[s] for s in shard_order[k::agents]]).astype(np.int64)
        for k in range(agents)
    ]


def dirichlet_draw(
    labels: np.ndarray, classes: int, agents: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One Dirichlet(alpha) draw: per class, shuffle its rows and cut by p ~ Dir(alpha).

    For c = 0..classes-1: rows of class c in order, `rng.shuffle`, `p = rng.dirichlet`,
    cut at `(cumsum(p) * n).astype(int)[:-1]`, chunk k appended to agent k
    (the label-skew scheme of Hsu et al. 2019, as pinned in BENCHMARKS.md).
    """
    labels = np.asarray(labels)
    shares: list[list[np.ndarray]] = [[] for _ in range(agents)]
    for cls in range(classes):
        rows = np.flatnonzero(labels == cls).astype(np.int64)
        rng.shuffle(rows)
        proportions = rng.dirichlet([alpha] * agents)
        cuts = (np.cumsum(proportions) * len(rows)).astype(int)[:-1]
        for agent, chunk in enumerate(np.split(rows, cuts)):
            shares[agent].append(chunk)
    return [np.concatenate(parts).astype(np.int64) for parts in shares]


def partition_dirichlet(
    labels: np.ndarray,
    classes: int,
    agents: int,
    alpha: float,
    rng: np.random.Generator,
    rows_min: int = 10,
) -> list[np.ndarray]:
    """Dirichlet label-skew partition, redrawn (same rng) until every agent has rows_min rows."""
    labels = np.asarray(labels)
    if alpha <= 0:
        raise PartitionError(f"alpha must be positive, got {alpha}")
    _check_agents(labels.shape[0], agents)
    if agents * rows_min > labels.shape[0]:
        raise PartitionError(f"{labels.shape[0]} rows < {agents} agents x {rows_min} rows")
    for _ in range(DIRICHLET_DRAWS_MAX):
        parts = dirichlet_draw(labels, classes, agents, alpha, rng)
        if min(len(part) for part in parts) >= rows_min:
            return parts
    raise PartitionError(f"no draw in {DIRICHLET_DRAWS_MAX} gave every agent {rows_min} rows")
