"""JWT verification (edge/auth.py) against PROTOCOL.md, "Authentication"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat.settings import DEV_JWT_SECRET, Settings, SettingsError, load_settings
from edge.auth import (
    MAX_LEEWAY_S,
    Identity,
    TokenVerifier,
    Unauthorized,
    authenticate,
    mint_token,
    token_from_request,
)

SECRET = "unit-test-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef-0123456789ab"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_public(private_key: Any) -> str:
    pem: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def hs_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "jwt_secret": SECRET, **overrides}
    return load_settings({}, **values)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def unauthorized(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(Unauthorized):
        verifier.verify(token)


# --------------------------------------------------------------------------- HS256


def test_hs256_accepted() -> None:
    verifier = TokenVerifier(hs_settings())
    exp = int(time.time()) + 600
    identity = verifier.verify(hs_token(exp=exp))
    assert identity == Identity(user="alice", expires_at=float(exp + verifier.leeway))
    assert verifier.algorithms == ["HS256"]


@pytest.mark.parametrize("user", ["a", "Alice.Smith@example.com", "u_1-2", "x" * 64])
def test_valid_subjects(user: str) -> None:
    assert TokenVerifier(hs_settings()).verify(hs_token(sub=user)).user == user


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_missing_required_claim_rejected(missing: str) -> None:
    token = jwt.encode(claims(**{missing: ...}), SECRET, algorithm="HS256")
    unauthorized(TokenVerifier(hs_settings()), token)


@pytest.mark.parametrize("sub", ["", "bad id", "x" * 65, "a:b", "alice\n", 5, None, ["alice"]])
def test_invalid_subject_rejected(sub: object) -> None:
    verifier = TokenVerifier(hs_settings())
    try:
        token = hs_token(sub=sub)
    except (TypeError, jwt.PyJWTError):
        return  # PyJWT refuses to even build it
    unauthorized(verifier, token)


@pytest.mark.parametrize("exp", ["tomorrow", None, [1], {"t": 1}])
def test_mistyped_exp_rejected(exp: object) -> None:
    unauthorized(TokenVerifier(hs_settings()), hs_token(exp=exp))


def test_expired_beyond_leeway_rejected() -> None:
    verifier = TokenVerifier(hs_settings(jwt_leeway_s=10))
    unauthorized(verifier, hs_token(exp=int(time.time()) - 60))
    unauthorized(verifier, hs_token(exp=int(time.time()) - 12))


def test_expired_within_leeway_accepted() -> None:
    verifier = TokenVerifier(hs_settings(jwt_leeway_s=10))
    exp = int(time.time()) - 3
    assert verifier.verify(hs_token(exp=exp)).expires_at == exp + 10


def test_leeway_is_capped() -> None:
    verifier = TokenVerifier(hs_settings(jwt_leeway_s=3600))
    assert verifier.leeway == MAX_LEEWAY_S == 30
    unauthorized(verifier, hs_token(exp=int(time.time()) - 120))
    assert TokenVerifier(hs_settings(jwt_leeway_s=-5)).leeway == 0


def test_not_before_in_the_future_rejected() -> None:
    unauthorized(TokenVerifier(hs_settings()), hs_token(nbf=int(time.time()) + 3600))


def test_alg_none_rejected() -> None:
    verifier = TokenVerifier(hs_settings())
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    unauthorized(verifier, f"{header}.{payload}.")
    unauthorized(verifier, jwt.encode(claims(), None, algorithm="none"))  # type: ignore[arg-type]
    header = b64(json.dumps({"alg": "None", "typ": "JWT"}).encode())
    unauthorized(verifier, f"{header}.{payload}.")


def test_other_secret_rejected() -> None:
    unauthorized(TokenVerifier(hs_settings()), hs_token(secret=OTHER_SECRET))


def test_tampered_payload_rejected() -> None:
    token = hs_token()
    header, _, signature = token.split(".")
    payload = b64(json.dumps(claims(sub="mallory")).encode())
    unauthorized(TokenVerifier(hs_settings()), f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "....", "Bearer x"])
def test_garbage_rejected(token: str) -> None:
    unauthorized(TokenVerifier(hs_settings()), token)


def test_hs512_refused_by_default() -> None:
    secret = SECRET * 2  # HS512 wants at least 64 bytes
    token = jwt.encode(claims(), secret, algorithm="HS512")
    unauthorized(TokenVerifier(hs_settings(jwt_secret=secret)), token)
    verifier = TokenVerifier(hs_settings(jwt_secret=secret, jwt_algorithms=("HS512",)))
    assert verifier.verify(token).user == "alice"


# --------------------------------------------------------------------------- RS256 / ES256


def test_rs256_with_public_key_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    settings = load_settings({}, env="prod", jwt_public_key=pem_public(rsa_key))
    verifier = TokenVerifier(settings)
    assert verifier.algorithms == ["RS256", "ES256"]
    token = jwt.encode(claims(sub="bob"), rsa_key, algorithm="RS256")
    assert verifier.verify(token).user == "bob"


def test_public_key_file_alias(tmp_path: Any, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem_public(rsa_key))
    settings = load_settings({"CHAT_ENV": "prod", "CHAT_JWT_PUBLIC_KEY_FILE": str(path)})
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert TokenVerifier(settings).verify(token).user == "alice"


def test_rs256_from_environment(rsa_key: rsa.RSAPrivateKey) -> None:
    settings = load_settings({"CHAT_ENV": "prod", "CHAT_JWT_PUBLIC_KEY": pem_public(rsa_key)})
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert TokenVerifier(settings).verify(token).user == "alice"


def test_rs256_signed_by_another_key_rejected(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_public_key=pem_public(rsa_key)))
    unauthorized(verifier, jwt.encode(claims(), other_rsa_key, algorithm="RS256"))


def test_hs256_signed_with_public_key_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic key-confusion attack: HMAC with the (public) PEM as the secret."""
    pem = pem_public(rsa_key)
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_public_key=pem))
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(sub="mallory")).encode())
    signing_input = f"{header}.{payload}".encode()
    for secret in (pem.encode(), pem.strip().encode()):
        signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        unauthorized(verifier, f"{header}.{payload}.{signature}")
    # Also with the shared secret still configured next to the public key.
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_secret=SECRET, jwt_public_key=pem))
    unauthorized(verifier, hs_token())


def test_es256_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_public_key=pem_public(ec_key)))
    token = jwt.encode(claims(sub="carol"), ec_key, algorithm="ES256")
    assert verifier.verify(token).user == "carol"


def test_es256_token_against_rsa_key_rejected(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_public_key=pem_public(rsa_key)))
    unauthorized(verifier, jwt.encode(claims(), ec_key, algorithm="ES256"))


def test_rs256_expired_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(load_settings({}, env="prod", jwt_public_key=pem_public(rsa_key)))
    unauthorized(
        verifier, jwt.encode(claims(exp=int(time.time()) - 300), rsa_key, algorithm="RS256")
    )
    unauthorized(verifier, jwt.encode(claims(exp=...), rsa_key, algorithm="RS256"))


# --------------------------------------------------------------------------- aud / iss


def test_audience_enforced_when_configured() -> None:
    verifier = TokenVerifier(hs_settings(jwt_audience="chat"))
    assert verifier.verify(hs_token(aud="chat")).user == "alice"
    assert verifier.verify(hs_token(aud=["other", "chat"])).user == "alice"
    unauthorized(verifier, hs_token())
    unauthorized(verifier, hs_token(aud="other"))
    unauthorized(verifier, hs_token(aud=["other"]))


def test_audience_ignored_when_not_configured() -> None:
    verifier = TokenVerifier(hs_settings())
    assert verifier.verify(hs_token(aud="anything")).user == "alice"


def test_issuer_enforced_when_configured() -> None:
    verifier = TokenVerifier(hs_settings(jwt_issuer="https://idp.example"))
    assert verifier.verify(hs_token(iss="https://idp.example")).user == "alice"
    unauthorized(verifier, hs_token())
    unauthorized(verifier, hs_token(iss="https://evil.example"))


def test_audience_and_issuer_from_environment() -> None:
    settings = load_settings(
        {
            "CHAT_ENV": "prod",
            "CHAT_JWT_SECRET": SECRET,
            "CHAT_JWT_AUDIENCE": "chat",
            "CHAT_JWT_ISSUER": "idp",
        }
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(hs_token(aud="chat", iss="idp")).user == "alice"
    unauthorized(verifier, hs_token(aud="chat"))
    unauthorized(verifier, hs_token(iss="idp"))


# --------------------------------------------------------------------------- configuration


def test_dev_secret_refused_outside_dev() -> None:
    with pytest.raises(SettingsError):
        TokenVerifier(load_settings({}, env="prod"))
    with pytest.raises(SettingsError):
        TokenVerifier(load_settings({"CHAT_ENV": "production", "CHAT_JWT_SECRET": DEV_JWT_SECRET}))


def test_dev_secret_allowed_in_dev() -> None:
    settings = load_settings({}, env="dev")
    verifier = TokenVerifier(settings)
    token = jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")
    assert verifier.verify(token).user == "alice"


def test_empty_secret_refused() -> None:
    with pytest.raises(SettingsError):
        TokenVerifier(load_settings({}, env="dev", jwt_secret=""))


@pytest.mark.parametrize(
    "algorithms",
    [
        ("HS256", "RS256"),
        ("RS256", "HS256"),
        ("ES256", "HS512"),
        ("HS256", "EdDSA"),
        ("PS256", "HS384"),
    ],
)
def test_mixing_hmac_and_public_key_algorithms_refused(
    algorithms: tuple[str, ...], rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = load_settings(
        {},
        env="prod",
        jwt_secret=SECRET,
        jwt_public_key=pem_public(rsa_key),
        jwt_algorithms=algorithms,
    )
    with pytest.raises(SettingsError):
        TokenVerifier(settings)


def test_mixing_refused_from_environment(rsa_key: rsa.RSAPrivateKey) -> None:
    env = {
        "CHAT_ENV": "prod",
        "CHAT_JWT_SECRET": SECRET,
        "CHAT_JWT_PUBLIC_KEY": pem_public(rsa_key),
        "CHAT_JWT_ALGORITHMS": "RS256, HS256",
    }
    settings = load_settings(env)
    assert settings.jwt_algorithms == ("RS256", "HS256")
    with pytest.raises(SettingsError):
        TokenVerifier(settings)


@pytest.mark.parametrize("algorithms", [("none",), ("NONE",), ("HS256", "none"), ("None",)])
def test_none_algorithm_refused(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(SettingsError):
        TokenVerifier(hs_settings(jwt_algorithms=algorithms))


def test_public_key_algorithms_need_a_key() -> None:
    with pytest.raises(SettingsError):
        TokenVerifier(hs_settings(jwt_algorithms=("RS256",)))


def test_explicit_rs256_only(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = load_settings(
        {}, env="prod", jwt_public_key=pem_public(rsa_key), jwt_algorithms=("RS256",)
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).user == "alice"
    unauthorized(verifier, jwt.encode(claims(), ec_key, algorithm="ES256"))


# --------------------------------------------------------------------------- minting, requests


def test_mint_token_round_trip() -> None:
    settings = hs_settings(jwt_audience="chat", jwt_issuer="idp")
    before = int(time.time())
    token, expires_ms = mint_token(settings, "alice", ttl_s=120)
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience="chat", issuer="idp")
    assert decoded["sub"] == "alice"
    assert before + 120 <= decoded["exp"] <= int(time.time()) + 120
    assert expires_ms == decoded["exp"] * 1000
    assert TokenVerifier(settings).verify(token).user == "alice"


def test_mint_token_rejects_bad_user() -> None:
    with pytest.raises(ValueError):
        mint_token(hs_settings(), "not a user")


def test_token_from_request() -> None:
    req = make_mocked_request("GET", "/v1/ws", headers={"Authorization": "Bearer abc.def.ghi"})
    assert token_from_request(req) == "abc.def.ghi"
    req = make_mocked_request("GET", "/v1/ws", headers={"Authorization": "bearer  tok "})
    assert token_from_request(req) == "tok"
    req = make_mocked_request("GET", "/v1/ws?access_token=qtok")
    assert token_from_request(req) == "qtok"
    req = make_mocked_request("GET", "/v1/ws", headers={"Authorization": "Basic eDp5"})
    assert token_from_request(req) is None
    req = make_mocked_request("GET", "/v1/ws", headers={"Authorization": "Bearer "})
    assert token_from_request(req) is None
    assert token_from_request(make_mocked_request("GET", "/v1/ws?access_token=")) is None
    assert token_from_request(make_mocked_request("GET", "/v1/ws")) is None


def test_authenticate() -> None:
    verifier = TokenVerifier(hs_settings())
    req = make_mocked_request("GET", "/v1/ws", headers={"Authorization": f"Bearer {hs_token()}"})
    assert authenticate(req, verifier).user == "alice"
    with pytest.raises(Unauthorized):
        authenticate(make_mocked_request("GET", "/v1/ws"), verifier)
    req = make_mocked_request("GET", f"/v1/ws?access_token={hs_token(secret=OTHER_SECRET)}")
    with pytest.raises(Unauthorized):
        authenticate(req, verifier)


# --------------------------------------------------------------------------- weak secrets, JWKS


@pytest.mark.parametrize("length", [1, 16, 31])
def test_weak_hs256_secret_refused_outside_dev(length: int) -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        TokenVerifier(load_settings({}, env="production", jwt_secret="k" * length))
    # In dev a short secret is allowed (local experiments), and 32 bytes is enough anywhere.
    TokenVerifier(load_settings({}, env="dev", jwt_secret="k" * length))
    TokenVerifier(load_settings({}, env="production", jwt_secret="k" * 32))


def test_weak_secret_counts_bytes_not_characters() -> None:
    # 16 characters, 32 bytes in UTF-8: long enough.
    TokenVerifier(load_settings({}, env="production", jwt_secret="é" * 16))
    with pytest.raises(SettingsError):
        TokenVerifier(load_settings({"CHAT_ENV": "production", "CHAT_JWT_SECRET": "short"}))


def oct_jwk(kid: str, secret: bytes, **extra: Any) -> dict[str, Any]:
    return {"kty": "oct", "kid": kid, "k": b64(secret), **extra}


def rsa_jwk(kid: str, private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid}


def write_jwks(path: Any, keys: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps({"keys": keys}))
    return str(path)


OLD_KEY = b"o" * 32
NEW_KEY = b"n" * 48


def test_jwks_rotation_two_hmac_keys_by_kid(tmp_path: Any) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", [oct_jwk("old", OLD_KEY), oct_jwk("new", NEW_KEY)])
    verifier = TokenVerifier(load_settings({"CHAT_ENV": "production", "CHAT_JWT_JWKS": jwks}))
    for kid, key in (("old", OLD_KEY), ("new", NEW_KEY)):
        token = jwt.encode(claims(sub=kid), key, algorithm="HS256", headers={"kid": kid})
        assert verifier.verify(token).user == kid
    # A kid with the other key's signature, an unknown kid, no kid (no CHAT_JWT_SECRET set):
    unauthorized(verifier, jwt.encode(claims(), OLD_KEY, algorithm="HS256", headers={"kid": "new"}))
    unauthorized(verifier, jwt.encode(claims(), OLD_KEY, algorithm="HS256", headers={"kid": "x"}))
    unauthorized(verifier, jwt.encode(claims(), OLD_KEY, algorithm="HS256"))
    unauthorized(verifier, jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256"))
    for bad_kid in (1, None, [], {"a": 1}, "", "x" * 10_000):
        header = b64(json.dumps({"alg": "HS256", "kid": bad_kid}).encode())
        unauthorized(verifier, f"{header}.{b64(json.dumps(claims()).encode())}.c2ln")


def test_jwks_and_secret_together(tmp_path: Any) -> None:
    """Tokens without a kid keep working with CHAT_JWT_SECRET while new ones carry a kid."""
    jwks = write_jwks(tmp_path / "jwks.json", [oct_jwk("new", NEW_KEY)])
    verifier = TokenVerifier(load_settings({}, env="production", jwt_secret=SECRET, jwt_jwks=jwks))
    assert verifier.verify(hs_token()).user == "alice"
    token = jwt.encode(claims(sub="bob"), NEW_KEY, algorithm="HS256", headers={"kid": "new"})
    assert verifier.verify(token).user == "bob"


def test_jwks_directory_of_public_keys(
    tmp_path: Any, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    (tmp_path / "a.json").write_text(json.dumps(rsa_jwk("2025", rsa_key)))
    write_jwks(tmp_path / "b.json", [rsa_jwk("2026", other_rsa_key)])
    (tmp_path / "README").write_text("not a key")
    verifier = TokenVerifier(load_settings({}, env="production", jwt_jwks=str(tmp_path)))
    assert verifier.algorithms == ["RS256", "ES256"]
    for kid, key in (("2025", rsa_key), ("2026", other_rsa_key)):
        token = jwt.encode(claims(sub="carol"), key, algorithm="RS256", headers={"kid": kid})
        assert verifier.verify(token).user == "carol"
    wrong = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "2026"})
    unauthorized(verifier, wrong)
    # Key confusion through a kid: HS256 signed with the public key's PEM.
    header = b64(json.dumps({"alg": "HS256", "kid": "2025"}).encode())
    payload = b64(json.dumps(claims(sub="mallory")).encode())
    mac = hmac.new(pem_public(rsa_key).encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    unauthorized(verifier, f"{header}.{payload}.{b64(mac.digest())}")


def test_jwks_key_rotated_in_is_picked_up(tmp_path: Any, monkeypatch: Any) -> None:
    import edge.auth

    path = tmp_path / "jwks.json"
    write_jwks(path, [oct_jwk("old", OLD_KEY)])
    verifier = TokenVerifier(load_settings({}, env="production", jwt_jwks=str(path)))
    token = jwt.encode(claims(), NEW_KEY, algorithm="HS256", headers={"kid": "new"})
    unauthorized(verifier, token)
    write_jwks(path, [oct_jwk("old", OLD_KEY), oct_jwk("new", NEW_KEY)])
    unauthorized(verifier, token)  # re-read at most every JWKS_RELOAD_INTERVAL_S
    monkeypatch.setattr(edge.auth, "JWKS_RELOAD_INTERVAL_S", 0.0)
    assert verifier.verify(token).user == "alice"
    path.write_text("{broken")  # a bad file keeps the keys loaded before
    assert verifier.verify(token).user == "alice"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"keys": [oct_jwk("a", b"s" * 31)]}, "at least 32"),
        ({"keys": [{"kty": "oct", "k": b64(OLD_KEY)}]}, "needs a kid"),
        ({"keys": [oct_jwk("a", OLD_KEY), oct_jwk("a", NEW_KEY)]}, "twice"),
        ({"keys": [{"kty": "XYZ", "kid": "a"}]}, "unsupported kty"),
        ({"keys": [oct_jwk("a", OLD_KEY, alg="HS512")]}, "fits none"),
        ({"keys": []}, "no keys"),
        ({"keys": "nope"}, "neither"),
        ([1, 2], "neither"),
        ({"keys": [{"kty": "RSA", "kid": "a", "n": "!!", "e": "AQAB"}]}, "mix|key 'a'"),
    ],
)
def test_bad_jwks_refused_at_start(tmp_path: Any, content: Any, error: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SettingsError, match=error):
        TokenVerifier(load_settings({}, env="production", jwt_jwks=str(path)))


def test_missing_jwks_refused(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        TokenVerifier(load_settings({}, env="production", jwt_jwks=str(tmp_path / "none.json")))
    with pytest.raises(SettingsError, match="no keys"):
        TokenVerifier(load_settings({}, env="production", jwt_jwks=str(tmp_path)))
