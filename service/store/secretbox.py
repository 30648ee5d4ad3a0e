"""The accounts' secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under SECRET_KEYS.

Only the store sees ciphertext: the account queries seal a secret on its way in and open it on its
way out, so the rest of the service works with plaintext. A stored secret is `fernet:` + a Fernet
token; the prefix marks it as encrypted, so the upgrade that encrypts older plaintext rows never
encrypts one twice. Several keys may be given (the first encrypts, every one decrypts), so a key
can be replaced without downtime: put the new one first, run `secrets rotate`, drop the old one.

The process' box is installed once at start-up (`install`); the account queries use `current()`.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
OPENED_KEPT = 4096


class SecretKeyError(Exception):
    """The stored secrets cannot be opened with SECRET_KEYS (a changed or missing key); one line, no secret."""


def valid_key(key: str) -> bool:
    """A Fernet key: 32 bytes in url-safe base64."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32 and len(key) == 44
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Seal and open secrets under a list of keys (the first encrypts, all decrypt)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        bad = [i + 1 for i, key in enumerate(keys) if not valid_key(key)]
        if bad:
            raise ValueError(f"key {bad[0]} is not 32 bytes in url-safe base64")
        self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
        # Opened tokens (each account's few secrets, read on every match): a Fernet open is ~20 µs.
        self._opened: dict[str, str] = {}

    @staticmethod
    def sealed(stored: str | None) -> bool:
        return stored is not None and stored.startswith(PREFIX)

    def seal(self, plain: str | None) -> str | None:
        if plain is None:
            return None
        return PREFIX + self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, stored: str | None) -> str | None:
        """The plaintext of a stored secret; a value without the prefix (written before encryption) as it is."""
        if stored is None or not stored.startswith(PREFIX):
            return stored
        plain = self._opened.get(stored)
        if plain is not None:
            return plain
        try:
            plain = self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "SECRET_KEYS: no key given decrypts the stored secrets (was the key replaced? keep the old one "
                "after the new one, SECRET_KEYS=new,old, until `python -m service secrets rotate` has run)"
            ) from None
        if len(self._opened) >= OPENED_KEPT:
            self._opened.clear()
        self._opened[stored] = plain
        return plain

    def reseal(self, stored: str | None) -> str | None:
        """The secret under the first key (plaintext gets encrypted; ciphertext re-encrypted)."""
        if stored is None:
            return None
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        self.open(stored)  # a clear error for a wrong key, before rotate's own InvalidToken
        return PREFIX + self._fernet.rotate(stored[len(PREFIX) :].encode("ascii")).decode("ascii")


_box: SecretBox | None = None


def install(box: SecretBox | None) -> SecretBox | None:
    """The box this process' account queries use (set at start-up from SECRET_KEYS); answer the one it replaces."""
    global _box
    previous, _box = _box, box
    return previous


def current() -> SecretBox:
    if _box is None:
        raise SecretKeyError("SECRET_KEYS: no key installed for the stored secrets (the process started without one)")
    return _box
