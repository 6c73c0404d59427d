"""JWT authentication of WebSocket upgrades and REST calls (PROTOCOL.md, "Authentication")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web

from chat import protocol
from chat.settings import DEV_JWT_SECRET, Settings, SettingsError

MAX_LEEWAY_S = 30


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    expires_at: float  # seconds since epoch


class Unauthorized(Exception):
    pass


class TokenVerifier:
    """Verifies tokens with an algorithm list fixed by configuration (never by the token)."""

    def __init__(self, settings: Settings) -> None:
        self.algorithms = settings.resolved_jwt_algorithms()
        if "none" in (a.lower() for a in self.algorithms):
            raise SettingsError("the JWT algorithm 'none' is never accepted")
        uses_hmac = any(a.startswith("HS") for a in self.algorithms)
        uses_keys = any(a[:2] in ("RS", "ES", "PS") or a == "EdDSA" for a in self.algorithms)
        if uses_hmac and uses_keys:
            # Mixing them lets an attacker sign an HS token with the (public) verification key.
            raise SettingsError("CHAT_JWT_ALGORITHMS must not mix HMAC and public-key algorithms")
        if uses_keys:
            if not settings.jwt_public_key:
                raise SettingsError("public-key JWT algorithms need CHAT_JWT_PUBLIC_KEY (PEM)")
            self.key: Any = settings.jwt_public_key
        else:
            if not settings.jwt_secret:
                raise SettingsError("CHAT_JWT_SECRET is empty")
            if settings.jwt_secret == DEV_JWT_SECRET and not settings.is_dev:
                raise SettingsError(
                    "CHAT_JWT_SECRET is the public development default; set a real secret "
                    "(or CHAT_ENV=dev for local use)"
                )
            self.key = settings.jwt_secret
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None
        self.leeway = min(max(settings.jwt_leeway_s, 0), MAX_LEEWAY_S)

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
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
        return Identity(user=user, expires_at=float(exp) + self.leeway)


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


def mint_token(settings: Settings, user: str, ttl_s: int | None = None) -> tuple[str, int]:
    """A HS256 token for local use (``POST /v1/dev/token``, ``python -m edge.token``)."""
    if not protocol.is_user_id(user):
        raise ValueError("user ids are 1-64 characters of [A-Za-z0-9_.@-]")
    expires_at = int(time.time()) + (ttl_s or settings.dev_token_ttl_s)
    claims: dict[str, Any] = {"sub": user, "exp": expires_at, "iat": int(time.time())}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256"), expires_at * 1000
