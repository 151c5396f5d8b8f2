"""Unpadded base64url (RFC 4648 section 5), decoded strictly: one spelling per byte string.

Lenient decoders accept ``+`` and ``/``, padding, characters outside the alphabet (skipped),
and any value in the unused low bits of the last character, so one MAC or signature has many
spellings. A token that may be told apart from another only by its bytes must have exactly one
(``requestState``; JWTs have their own copy in ``auth/_jwt.py``, which may import nothing of
ours): anything but the canonical encoding is refused.
"""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_strict(text: str) -> bytes:
    """The bytes ``text`` encodes, or ``ValueError`` unless it is their canonical spelling."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))  # binascii.Error is a ValueError
    if base64.urlsafe_b64encode(data).rstrip(b"=") != text.encode("ascii"):  # UnicodeError: also a ValueError
        raise ValueError("non-canonical base64url")
    return data
