"""The deployment's master key, what is derived from it, and the tokens minted with it.

One 32-byte master key per deployment: ``ORRERY_MASTER_KEY`` (base64 of 32 bytes; how a cluster
gives the same key to the gateway and the sessions service), else ``$ORRERY_HOME/master.key``,
generated on first use with mode 0600. From it, by HKDF with a label per purpose:

- the AES-GCM key that seals per-user API keys and environment variables (the gateway seals what
  a user sets; the sessions service opens them into the agent's process, nowhere else);
- the HMAC key that signs access tokens and sessions' MCP tokens (JWT, HS256).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from orrery.runtime.errors import ConfigurationError

KEY_BYTES = 32
NONCE_BYTES = 12
ISSUER = "orrery"
SESSION_TOKEN_TTL_S = 6 * 3600


def master_key(home: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The master key from the environment, else from ``home``, created there if missing."""
    e = os.environ if env is None else env
    raw = e.get("ORRERY_MASTER_KEY")
    if raw:
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("ORRERY_MASTER_KEY is not base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"ORRERY_MASTER_KEY must be {KEY_BYTES} bytes of base64"
                " (make one with `openssl rand -base64 32`)"
            )
        return key
    path = home / "master.key"
    home.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole under another name, then linked into place: two services starting at
        # once agree on one key, and neither ever reads a half-written file.
        tmp = home / f".master.key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            tmp.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{path} is not a {KEY_BYTES}-byte key")
    return key


def _derive(master: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(master)


class SecretError(Exception):
    """A sealed value that does not open under this key (another key, or tampered with)."""


@dataclass(frozen=True)
class Keys:
    seal_key: bytes
    sign_key: bytes

    @classmethod
    def from_master(cls, master: bytes) -> Keys:
        return cls(_derive(master, "orrery secrets v1"), _derive(master, "orrery tokens v1"))

    # -- sealing -------------------------------------------------------------------------------

    def seal(self, user_id: str, kind: str, name: str, value: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        box = AESGCM(self.seal_key).encrypt(nonce, value.encode(), _aad(user_id, kind, name))
        return base64.b64encode(nonce + box).decode()

    def open(self, user_id: str, kind: str, name: str, sealed: str) -> str:
        try:
            raw = base64.b64decode(sealed)
            plain = AESGCM(self.seal_key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(user_id, kind, name)
            )
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretError(f"{kind} {name} of {user_id} does not open") from exc
        return plain.decode()

    # -- tokens --------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], ttl_s: float) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "iat": now, "exp": now + int(ttl_s), **claims}
        return jwt.encode(body, self.sign_key, algorithm="HS256")

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this deployment signed and that has not expired, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.sign_key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "iss", "sub", "typ"]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    def session_token(
        self, user_id: str, session_id: str, worktree_id: str, ttl_s: float = SESSION_TOKEN_TTL_S
    ) -> str:
        """What a session's agent calls Orrery's MCP server with: that session, its worktree,
        and the boards the worktree is on; never more than its creator may do."""
        return self.sign(
            {"typ": "session", "sub": user_id, "sid": session_id, "wt": worktree_id}, ttl_s
        )


def _aad(user_id: str, kind: str, name: str) -> bytes:
    return f"{user_id}\x00{kind}\x00{name}".encode()
