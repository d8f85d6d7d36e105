"""The committed digits file and the digits-8 reference split (BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agentmesh.core.learning import digits8
from agentmesh.tools.data import load_digits, load_digits8_split


def test_digits_file_shapes_types_and_ranges() -> None:
    features, labels = load_digits()
    assert features.shape == (1797, 64) and features.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert int(features.max()) == 16 and int(features.min()) == 0
    assert sorted(set(labels.tolist())) == list(range(10))
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_file_matches_scikit_learn_in_file_order() -> None:
    datasets = pytest.importorskip(
        "sklearn.datasets", reason="scikit-learn (dev-only) not installed: pip install scikit-learn"
    )
    bunch = datasets.load_digits()
    features, labels = load_digits()
    assert np.array_equal(features, bunch.data)
    assert np.array_equal(labels, bunch.target)


def test_loader_works_without_scikit_learn() -> None:
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from agentmesh.tools.data import load_digits8_split\n"
        "print(load_digits8_split().fingerprint())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == digits8.FINGERPRINT


def test_split_sizes_and_fingerprint() -> None:
    split = load_digits8_split()
    assert [len(rows) for rows in split.agent_rows] == list(digits8.AGENT_SIZES)
    assert split.fingerprint() == digits8.FINGERPRINT
    assert len(split.test_rows) == 360 and len(split.train_rows) == 1437


def test_split_rows_are_disjoint_and_cover_everything() -> None:
    split = load_digits8_split()
    assigned = np.concatenate(split.agent_rows)
    assert np.array_equal(np.sort(assigned), np.sort(split.train_rows))
    everything = np.concatenate([split.test_rows, assigned])
    assert np.array_equal(np.sort(everything), np.arange(1797))


def test_test_split_is_the_seeded_permutation_prefix() -> None:
    split = load_digits8_split()
    assert np.array_equal(split.test_rows, np.random.default_rng(42).permutation(1797)[:360])


def test_standardization_uses_training_rows_only() -> None:
    split = load_digits8_split()
    features, labels = load_digits()
    train = np.concatenate([agent.features for agent in split.agents]).astype(np.float64)
    assert split.test.features.dtype == np.float32
    assert all(agent.features.dtype == np.float32 for agent in split.agents)
    varying = features[split.train_rows].std(axis=0) >= 1e-8
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(train.std(axis=0)[varying], 1.0, atol=1e-4)
    # A constant training column keeps std 1: its values are merely centred.
    assert np.all(split.std[~varying] == 1.0)
    assert np.array_equal(split.test.labels, labels[split.test_rows])


def test_agent_labels_follow_their_rows() -> None:
    split = load_digits8_split()
    _, labels = load_digits()
    for rows, agent in zip(split.agent_rows, split.agents, strict=True):
        assert np.array_equal(agent.labels, labels[rows])


def test_partition_is_label_skewed() -> None:
    split = load_digits8_split()
    histograms = np.array([np.bincount(a.labels, minlength=10) for a in split.agents])
    # Dirichlet(0.5) leaves some agents with (almost) no rows of some classes.
    assert (histograms <= 2).sum() >= 8


def test_initial_weights() -> None:
    weights = digits8.initial_mlp_weights()
    assert [w.shape for w in weights] == [(64, 32), (32,), (32, 10), (10,)]
    assert all(w.dtype == np.float32 for w in weights)
    assert sum(w.size for w in weights) == 2410
    assert sum(w.nbytes for w in weights) == 9640
    assert not weights[1].any() and not weights[3].any()
    g = np.random.default_rng(42)
    first = g.normal(0, np.sqrt(2 / 64), (64, 32)).astype(np.float32)
    assert np.array_equal(weights[0], first)
    assert np.array_equal(weights[2], g.normal(0, np.sqrt(2 / 32), (32, 10)).astype(np.float32))
    assert np.array_equal(weights[0], digits8.initial_mlp_weights()[0])
