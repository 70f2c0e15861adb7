"""CSRF protection: a signed double-submit token, checked on every state-changing request.

The browser holds a random value in an HttpOnly, SameSite=Strict cookie; every form carries
``HMAC(app secret, that value)``. A forged cross-site request gets neither the cookie (the
SameSite rule) nor the token (it can't read our pages, and can't compute the HMAC without the
secret, which lives in this process only). Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable

TOKEN_FIELD = "csrf_token"  # noqa: S105 - a form field's name, not a secret
TOKEN_HEADER = "X-CSRF-Token"  # noqa: S105 - a header's name, not a secret
COOKIE_VALUE_BYTES = 32
MAX_TOKEN_CHARS = 128


def new_cookie_value(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    return base64.urlsafe_b64encode(random_bytes(COOKIE_VALUE_BYTES)).decode().rstrip("=")


def token_for(secret: bytes, cookie_value: str) -> str:
    assert len(secret) >= 32
    mac = hmac.new(secret, b"mydrive-csrf-v1\0" + cookie_value.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def token_ok(secret: bytes, cookie_value: str | None, token: str | None) -> bool:
    """True only if ``token`` is the token of ``cookie_value`` (constant-time compare)."""
    if not cookie_value or not token or len(cookie_value) > MAX_TOKEN_CHARS \
            or len(token) > MAX_TOKEN_CHARS:
        return False
    expected = token_for(secret, cookie_value)
    return hmac.compare_digest(expected.encode(), token.encode())


class CsrfRejected(Exception):
    """A state-changing request without a valid CSRF token (forged, or a stale page)."""
