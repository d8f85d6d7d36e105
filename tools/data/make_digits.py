"""Regenerate digits.npz from scikit-learn's copy of the UCI digits (dev-time only).

    python -m agentmesh.tools.data.make_digits [--out PATH]

Keeps the file order of `sklearn.datasets.load_digits()`; prints the content digest
to paste into `digits.DIGITS_CONTENT_SHA256` if the source ever changes.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

from agentmesh.tools.data.digits import content_sha256

DEFAULT_OUT = Path(__file__).with_name("digits.npz")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def fetch_from_sklearn() -> tuple[np.ndarray, np.ndarray]:
    """X and y from scikit-learn, converted losslessly to uint8."""
    from sklearn.datasets import load_digits  # dev-time only, not a runtime dependency

    bunch = load_digits()
    features = np.asarray(bunch.data)
    labels = np.asarray(bunch.target)
    if not np.array_equal(features, np.round(features)) or features.min() < 0:
        raise ValueError("digits features are not small non-negative integers")
    if features.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("digits values out of range")
    return features.astype(np.uint8), labels.astype(np.uint8)


def write_npz(features: np.ndarray, labels: np.ndarray, out: Path) -> int:
    """Write a compressed .npz byte-for-byte reproducibly; return its size in bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in (("X", features), ("y", labels)):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            # A fixed timestamp (np.savez uses the current time) keeps the bytes stable.
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    out.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Fetch, convert and write the file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    features, labels = fetch_from_sklearn()
    size_bytes = write_npz(features, labels, args.out)
    print(f"wrote {args.out} ({size_bytes} bytes); sha256 {content_sha256(features, labels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
