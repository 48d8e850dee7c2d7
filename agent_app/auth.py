"""API-key authentication: keys are compared by SHA-256 against hashes from a Secret."""

from __future__ import annotations

import hashlib
import hmac


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = dict(hashes)

    def tenant_for(self, key: str) -> str | None:
        digest = hash_key(key)
        found: str | None = None
        # Every stored hash is compared so the time taken does not reveal which one matched.
        for stored, tenant in self._hashes.items():
            if hmac.compare_digest(stored, digest):
                found = tenant
        return found


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
