"""The identity key file: made on first run with mode 0600, refused if others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.signing

from agentmesh.core.identity import SEED_SIZE_BYTES, Identity

KEY_FILE_NAME = "identity.key"
_KEY_FILE_MAGIC = b"agentmesh-ed25519-seed-v1\n"


class KeystoreError(Exception):
    """The key file cannot be used; the message says why and what to do."""


def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE_NAME


def load_or_create_identity(state_dir: Path) -> Identity:
    """Load the identity in `state_dir`, creating directory and key on first run."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_path(state_dir)
    if path.exists():
        return load_identity(path)
    return _create_identity(path)


def load_identity(path: Path) -> Identity:
    """Read a key file, refusing one that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise KeystoreError(f"cannot read key file {path}: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise KeystoreError(f"key file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeystoreError(
            f"key file {path} has mode {stat.S_IMODE(mode):04o}: others can read the private "
            f"key. Refusing to start. Fix with: chmod 600 {path}"
        )
    data = path.read_bytes()
    if not data.startswith(_KEY_FILE_MAGIC) or len(data) != len(_KEY_FILE_MAGIC) + SEED_SIZE_BYTES:
        raise KeystoreError(f"key file {path} is not an agentmesh identity key (corrupt?)")
    return Identity.from_seed(data[len(_KEY_FILE_MAGIC) :])


def _create_identity(path: Path) -> Identity:
    signing_key = nacl.signing.SigningKey.generate()
    seed = bytes(signing_key)
    # O_EXCL + 0600 from the first byte: the key is never readable by others,
    # and two agents racing on one state dir cannot both write a key.
    temp = path.with_suffix(".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise KeystoreError(
            f"{temp} exists: another agent may be creating a key in this state dir"
        ) from error
    with os.fdopen(fd, "wb") as handle:
        handle.write(_KEY_FILE_MAGIC + seed)
        handle.flush()
        os.fsync(handle.fileno())
    os.link(temp, path)  # fails if a key appeared meanwhile: never overwrite an identity
    temp.unlink()
    return Identity.from_seed(seed)
