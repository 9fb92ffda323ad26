"""Ed25519 identities of operators and approvers (RFC 8032, via ``cryptography``).

A key pair lives in a key directory as ``NAME.key`` (PKCS#8 PEM, unencrypted,
mode 0600: readable by its owner only, like an SSH key) and ``NAME.pub``
(SubjectPublicKeyInfo PEM, shareable). The directory is ``--dir``, else
``$DPSYNTH_KEYS``, else ``~/.config/dpsynth/keys``. A key's id is the sha256
of its 32 raw public-key bytes (hex); the short form is its first 16 digits.

A directory of ``NAME.pub`` files is a set of trusted keys for
``dpsynth verify --trusted-keys``: it binds each name to one public key.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from dpsynth.errors import UsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_key_dir() -> Path:
    """``$DPSYNTH_KEYS`` if set, else ``~/.config/dpsynth/keys``."""
    env = os.environ.get("DPSYNTH_KEYS")
    return Path(env) if env else Path.home() / ".config" / "dpsynth" / "keys"


def check_name(name: str) -> str:
    """An identity name: 1-64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(
            f"identity name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """sha256 (hex) of the raw 32-byte public key."""
    return hashlib.sha256(raw_public(public)).hexdigest()


def public_from_hex(text: str) -> Ed25519PublicKey:
    """A public key from its raw bytes in hex (as stored in signatures); ``ValueError`` if malformed."""
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def signature_valid(public: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    """Whether ``signature_hex`` is ``public``'s Ed25519 signature of ``message``."""
    try:
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A named private key: what signs a release or an approval."""

    name: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    @property
    def public_hex(self) -> str:
        return raw_public(self.public).hex()

    def sign(self, message: bytes) -> str:
        """Hex Ed25519 signature of ``message``."""
        return self.private.sign(message).hex()


def new_key(name: str, key_dir: Path | None = None) -> Identity:
    """Create ``NAME.key`` (mode 0600) and ``NAME.pub`` in ``key_dir``; refuse to overwrite an existing key."""
    check_name(name)
    directory = key_dir or default_key_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    if private_path.exists() or public_path.exists():
        raise UsageError(
            f"a key named {name!r} already exists in {directory}; keys are never overwritten "
            "(a signature made with the old key would no longer verify): choose another name"
        )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # created 0600 from the first byte: never readable by others, even for an instant
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(private_path, 0o600)  # the umask can only remove bits; make the mode exact
    public_path.write_bytes(export_public(private.public_key()))
    return Identity(name=name, private=private)


def export_public(public: Ed25519PublicKey) -> bytes:
    """The public key as SubjectPublicKeyInfo PEM (what ``NAME.pub`` holds)."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_identity(name: str, key_dir: Path | None = None, option: str = "--as") -> Identity:
    """The private key ``NAME.key``; ``UsageError`` (naming ``option``) if absent, unreadable or not 0600."""
    check_name(name)
    directory = key_dir or default_key_dir()
    path = directory / f"{name}.key"
    if not path.is_file():
        raise UsageError(
            f"{option} {name}: no key {path}. Create one with `dpsynth keys new {name}` (or point "
            "--keys-dir / $DPSYNTH_KEYS at the directory that holds it)",
            parameter="operator",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsageError(
            f"{option} {name}: key file {path} has mode {mode:o}, readable by others; make it private "
            f"with `chmod 600 {path}`"
        )
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{option} {name}: {path} is not a PEM private key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise UsageError(f"{option} {name}: {path} is not an Ed25519 key")
    return Identity(name=name, private=private)


def load_public(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; ``UsageError`` naming the file otherwise."""
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable PEM public key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return public


def trusted_keys(directory: Path) -> dict[str, str]:
    """``{name: key id}`` of every ``NAME.pub`` in ``directory`` (``--trusted-keys``)."""
    if not directory.is_dir():
        raise UsageError(f"--trusted-keys {directory}: not a directory of NAME.pub files")
    found = {p.stem: key_id(load_public(p)) for p in sorted(directory.glob("*.pub"))}
    if not found:
        raise UsageError(f"--trusted-keys {directory}: holds no NAME.pub file")
    return found


__all__ = [
    "Identity",
    "check_name",
    "default_key_dir",
    "export_public",
    "key_id",
    "load_identity",
    "load_public",
    "new_key",
    "public_from_hex",
    "signature_valid",
    "trusted_keys",
]
