"""JWT authentication of WebSocket upgrades and REST calls (PROTOCOL.md, "Authentication")."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from chat import protocol
from chat.settings import DEV_JWT_SECRET, Settings, SettingsError

MAX_LEEWAY_S = 30
MODERATOR_ROLE = "moderator"
MAX_ROLES = 16


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    expires_at: float  # seconds since epoch
    # The token's `roles` claim (["moderator"] opens the moderation API, docs/moderation.md).
    roles: frozenset[str] = frozenset()
    # The token's `account_created` claim (epoch seconds), for the new-account rule.
    account_created: float | None = None

    @property
    def account_created_ms(self) -> int | None:
        return None if self.account_created is None else int(self.account_created * 1000)

    @property
    def is_moderator(self) -> bool:
        return MODERATOR_ROLE in self.roles


class Unauthorized(Exception):
    pass


# RFC 7518 3.2: an HMAC key must be at least as long as the hash (32 bytes for HS256); a short
# one can be brute-forced offline from any token.
MIN_HMAC_KEY_BYTES = 32
# A token naming a kid the edge does not know re-reads the JWKS (a key rotated in), at most
# this often, so garbage kids cannot make the edge read files in a loop.
JWKS_RELOAD_INTERVAL_S = 5.0
_KEY_FAMILIES = {"oct": ("HS",), "RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}

log = logging.getLogger("chat.edge.auth")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: Any
    algorithms: list[str]


def _is_hmac(algorithm: str) -> bool:
    return algorithm.startswith("HS")


def _is_public_key(algorithm: str) -> bool:
    return algorithm[:2] in ("RS", "ES", "PS") or algorithm == "EdDSA"


def read_jwks(path: str) -> list[dict[str, Any]]:
    """The JWKs of a JWKS file, or of every ``*.json`` file in a directory (each a JWKS
    ``{"keys": [...]}`` or a single JWK)."""
    source = Path(path)
    files = sorted(source.glob("*.json")) if source.is_dir() else [source]
    found: list[dict[str, Any]] = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"CHAT_JWT_JWKS: cannot read {file}: {exc}") from None
        keys = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise SettingsError(f"CHAT_JWT_JWKS: {file} is neither a JWKS nor a JWK")
        found.extend(keys)
    if not found:
        raise SettingsError(f"CHAT_JWT_JWKS: no keys in {path}")
    return found


class TokenVerifier:
    """Verifies tokens with an algorithm list fixed by configuration (never by the token).

    Keys: the single configured key (``CHAT_JWT_SECRET`` or ``CHAT_JWT_PUBLIC_KEY``) for tokens
    without a ``kid``, and with ``CHAT_JWT_JWKS`` any number of keys chosen by ``kid``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        jwks = read_jwks(settings.jwt_jwks) if settings.jwt_jwks else []
        self.algorithms: list[str] = list(settings.jwt_algorithms)
        if not self.algorithms:
            self.algorithms = settings.resolved_jwt_algorithms()
            if jwks and not settings.jwt_public_key:
                # No key configured besides the JWKS: its key types say which family.
                if any(k.get("kty") != "oct" for k in jwks):
                    self.algorithms = ["RS256", "ES256"]
        if "none" in (a.lower() for a in self.algorithms):
            raise SettingsError("the JWT algorithm 'none' is never accepted")
        self.uses_hmac = any(_is_hmac(a) for a in self.algorithms)
        uses_keys = any(_is_public_key(a) for a in self.algorithms)
        if self.uses_hmac and uses_keys:
            # Mixing them lets an attacker sign an HS token with the (public) verification key.
            raise SettingsError("CHAT_JWT_ALGORITHMS must not mix HMAC and public-key algorithms")
        self.default_key: Any = None
        if uses_keys:
            if settings.jwt_public_key:
                self.default_key = settings.jwt_public_key
            elif not jwks:
                raise SettingsError("public-key JWT algorithms need CHAT_JWT_PUBLIC_KEY (PEM)")
        else:
            secret = settings.jwt_secret
            unset = not secret or (secret == DEV_JWT_SECRET and not settings.is_dev)
            if unset and jwks:
                pass  # only tokens with a kid, verified with the JWKS
            elif not secret:
                raise SettingsError("CHAT_JWT_SECRET is empty")
            elif secret == DEV_JWT_SECRET and not settings.is_dev:
                raise SettingsError(
                    "CHAT_JWT_SECRET is the public development default; set a real secret "
                    "(or CHAT_ENV=dev for local use)"
                )
            else:
                self._check_hmac_strength(len(secret.encode()), "CHAT_JWT_SECRET")
                self.default_key = secret
        self.keys = self._prepare(jwks)
        self._jwks_loaded_at = time.monotonic()
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None
        self.leeway = min(max(settings.jwt_leeway_s, 0), MAX_LEEWAY_S)

    def _check_hmac_strength(self, length: int, what: str) -> None:
        if length < MIN_HMAC_KEY_BYTES and not self.settings.is_dev:
            raise SettingsError(
                f"{what} is {length} bytes; HMAC keys need at least {MIN_HMAC_KEY_BYTES} random "
                "bytes outside dev (e.g. openssl rand -hex 32)"
            )

    def _prepare(self, jwks: list[dict[str, Any]]) -> dict[str, VerificationKey]:
        """Each JWK as a key with the configured algorithms of its family (or its own ``alg``,
        when it names one the configuration allows)."""
        keys: dict[str, VerificationKey] = {}
        for jwk in jwks:
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                raise SettingsError("CHAT_JWT_JWKS: every key needs a kid")
            if kid in keys:
                raise SettingsError(f"CHAT_JWT_JWKS: kid {kid!r} appears twice")
            prefixes = _KEY_FAMILIES.get(str(jwk.get("kty")))
            if prefixes is None:
                raise SettingsError(f"CHAT_JWT_JWKS: key {kid!r} has an unsupported kty")
            allowed = [a for a in self.algorithms if a.startswith(prefixes)]
            if "alg" in jwk:
                allowed = [a for a in allowed if a == jwk["alg"]]
            if not allowed:
                raise SettingsError(
                    f"CHAT_JWT_JWKS: key {kid!r} fits none of the algorithms {self.algorithms}"
                )
            try:
                key = jwt.PyJWK(jwk, allowed[0]).key
            except jwt.PyJWTError as exc:
                raise SettingsError(f"CHAT_JWT_JWKS: key {kid!r}: {exc}") from None
            if jwk["kty"] == "oct":
                self._check_hmac_strength(len(key), f"CHAT_JWT_JWKS key {kid!r}")
            keys[kid] = VerificationKey(key, allowed)
        return keys

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(str(exc)) from None
        kid = header.get("kid")
        if kid is None:
            if self.default_key is None:
                raise Unauthorized("the token names no kid")
            return self.default_key, self.algorithms
        if not isinstance(kid, str):
            raise Unauthorized("kid is not a string")
        found = self.keys.get(kid)
        if found is None and self._reload_jwks():
            found = self.keys.get(kid)
        if found is None:
            raise Unauthorized("unknown kid")
        return found.key, found.algorithms

    def _reload_jwks(self) -> bool:
        """Re-read the JWKS (a key rotated in since the start); True if it changed."""
        now = time.monotonic()
        if not self.settings.jwt_jwks or now - self._jwks_loaded_at < JWKS_RELOAD_INTERVAL_S:
            return False
        self._jwks_loaded_at = now
        try:
            keys = self._prepare(read_jwks(self.settings.jwt_jwks))
        except SettingsError as exc:
            log.error("JWKS reload failed, keeping the keys loaded before: %s", exc)
            return False
        changed = keys.keys() != self.keys.keys()
        self.keys = keys
        return changed

    def verify(self, token: str) -> Identity:
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub", "exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(str(exc)) from None
        user = claims.get("sub")
        if not isinstance(user, str) or not protocol.is_user_id(user):
            raise Unauthorized("sub is not a valid user id")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise Unauthorized("exp is not a number")
        return Identity(
            user=user,
            expires_at=float(exp) + self.leeway,
            roles=_roles(claims.get("roles")),
            account_created=_epoch_seconds(claims.get("account_created"), "account_created"),
        )


def _roles(claim: object) -> frozenset[str]:
    if claim is None:
        return frozenset()
    if (
        not isinstance(claim, list)
        or len(claim) > MAX_ROLES
        or not all(isinstance(r, str) and 0 < len(r) <= 64 for r in claim)
    ):
        raise Unauthorized(f"roles must be a list of at most {MAX_ROLES} short strings")
    return frozenset(claim)


def _epoch_seconds(claim: object, name: str) -> float | None:
    if claim is None:
        return None
    if isinstance(claim, bool) or not isinstance(claim, int | float) or claim < 0:
        raise Unauthorized(f"{name} is not a time in seconds")
    return float(claim)


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.query.get("access_token") or None


def authenticate(request: web.Request, verifier: TokenVerifier) -> Identity:
    token = token_from_request(request)
    if token is None:
        raise Unauthorized("no token")
    return verifier.verify(token)


def mint_token(
    settings: Settings,
    user: str,
    ttl_s: int | None = None,
    roles: list[str] | None = None,
    account_created: int | None = None,
) -> tuple[str, int]:
    """A HS256 token for local use (``POST /v1/dev/token``, ``python -m edge.token``)."""
    if not protocol.is_user_id(user):
        raise ValueError("user ids are 1-64 characters of [A-Za-z0-9_.@-]")
    expires_at = int(time.time()) + (ttl_s or settings.dev_token_ttl_s)
    claims: dict[str, Any] = {"sub": user, "exp": expires_at, "iat": int(time.time())}
    if roles:
        claims["roles"] = roles
    if account_created is not None:
        claims["account_created"] = account_created
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256"), expires_at * 1000
