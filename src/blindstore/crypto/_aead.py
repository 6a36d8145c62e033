"""AES-GCM restricted to the parameters HGW-1 uses: 96-bit nonces and 128-bit tags.

Other nonce lengths are refused outright: GCM hashes them into a counter block, a path with a
history of key-recovery bugs that this format never needs.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blindstore.crypto._failure import integrity_failure

BytesLike = bytes | bytearray | memoryview

NONCE_SIZE = 12
TAG_SIZE = 16
_AES_KEY_SIZES = (16, 24, 32)


class AesGcm:
    """One AES-GCM key; ``decrypt`` failures raise the opaque ``IntegrityError``."""

    __slots__ = ("_gcm",)

    def __init__(self, key: BytesLike) -> None:
        if len(key) not in _AES_KEY_SIZES:
            raise ValueError("AES-GCM key must be 16, 24 or 32 bytes")
        self._gcm = AESGCM(key)

    def encrypt(self, nonce: bytes, plaintext: BytesLike, aad: BytesLike | None = None) -> bytes:
        """Return ``ciphertext || tag``."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("AES-GCM nonce must be 12 bytes")
        return self._gcm.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: BytesLike, aad: BytesLike | None = None) -> bytes:
        """Verify the tag, then return the plaintext; nothing is returned on failure."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError("AES-GCM nonce must be 12 bytes")
        try:
            return self._gcm.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise integrity_failure("chunk authentication failed") from None
