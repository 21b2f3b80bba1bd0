"""TOTP secrets encrypted at rest with AES-256-GCM (``cryptography``).

``AUTHGW_SECRET_KEY`` holds one or more keys, comma-separated: the first encrypts, every one
decrypts, so keys can be rotated. Each 256-bit AES key is derived from its configured key with
HKDF-SHA256. A ciphertext is ``v1.<key id>.<base64(nonce || ciphertext)>`` and is bound to the
customer's tag as associated data, so it cannot be moved to another customer.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    def __init__(self, keys: tuple[bytes, ...]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys: list[tuple[str, AESGCM]] = []
        for key in keys:
            derived = HKDF(hashes.SHA256(), 32, salt=None, info=b"authgw totp secret v1").derive(key)
            key_id = hashlib.sha256(derived).hexdigest()[:8]
            self._keys.append((key_id, AESGCM(derived)))

    def seal(self, plaintext: str, context: str) -> str:
        key_id, aead = self._keys[0]
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"v1.{key_id}.{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: str, context: str) -> str:
        """The plaintext; ``ValueError`` if no configured key opens it."""
        try:
            version, key_id, body = token.split(".", 2)
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise ValueError("not a sealed secret") from None
        if version != "v1":
            raise ValueError("unknown version")
        for candidate_id, aead in self._keys:
            if candidate_id == key_id:
                try:
                    return aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
                except InvalidTag:
                    break
        raise ValueError("no configured key opens this secret")
