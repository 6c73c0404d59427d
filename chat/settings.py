"""All configuration, read once from ``CHAT_*`` environment variables into one typed object.

Every process (edge, stream worker, sink, chatctl) builds a :class:`Settings` with
:func:`load_settings` and passes it down; nothing else reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, fields
from typing import Any

# A secret that anyone reading the source knows. The edge refuses to start with it unless
# CHAT_ENV=dev, so a production deployment cannot run with it by accident.
DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"
# Likewise the object store's secret of the local stack (ops/stack/stack.sh configures it): the
# edges and the media processor refuse it unless CHAT_ENV=dev.
DEV_S3_SECRET = "chat-dev-secret-change-me"


class SettingsError(ValueError):
    """A CHAT_* variable has a value the process cannot run with."""


@dataclass(frozen=True)
class Settings:
    # "dev" enables POST /v1/dev/token and the well-known development JWT secret.
    env: str = "production"
    # Backends
    kafka_bootstrap: str = "127.0.0.1:9092"
    # How every Kafka client authenticates and checks the brokers; chat/kafka_security.py is
    # the one place that turns these into client arguments. PLAINTEXT, SSL, SASL_PLAINTEXT or
    # SASL_SSL; SASL needs the user and password, TLS trusts CHAT_KAFKA_SSL_CAFILE (or the
    # system's CAs when empty) and presents a client certificate when both files are set.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis connections per process; a caller beyond them waits for a free one.
    redis_max_connections: int = 256
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "chat"
    # Authentication
    jwt_secret: str = DEV_JWT_SECRET
    jwt_public_key: str = ""
    # A JWKS file (or a directory of *.json JWKS/JWK files): several keys accepted at once,
    # each token's `kid` choosing its key, so keys rotate without a flag day.
    jwt_jwks: str = ""
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway_s: int = 10
    dev_token_ttl_s: int = 12 * 3600
    # Edge node
    edge_host: str = "127.0.0.1"
    edge_port: int = 8080
    # Connections the kernel queues before the edge accepts them (capped by
    # net.core.somaxconn). A reconnect storm overflows a short queue, and every dropped SYN
    # costs its client a retransmit: 1, 3, 7, 15 s.
    edge_listen_backlog: int = 4096
    lb_port: int = 8000  # make run: nginx in front of both edges (0: no nginx)
    edge_slot: int = -1  # -1: lease a free slot from Redis
    allowed_origins: tuple[str, ...] = ()
    # Origins (http(s)://host[:port]) the web client may open its WebSocket to besides the
    # page's own; also the Content-Security-Policy's connect-src. Nothing else gets the token.
    web_edges: tuple[str, ...] = ()
    # One-time WebSocket tickets (POST /v1/ws-ticket): how long one stays redeemable.
    ws_ticket_ttl_s: int = 30
    # Peers (e.g. the nginx in front) whose X-Forwarded-For names the real client address.
    # Addresses or CIDR ranges (10.0.0.0/8) of the proxies whose X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    # Where workers and the sink serve /healthz, /readyz and /metrics (0.0.0.0 in containers).
    metrics_host: str = "127.0.0.1"
    web_dist: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    ping_interval_s: float = 20.0
    edge_liveness_ttl_s: int = 10
    # Limits
    max_frame_bytes: int = 64 * 1024
    max_group_members: int = 1000
    messages_per_s: float = 20.0
    messages_burst: int = 40
    typing_per_s: float = 5.0
    typing_burst: int = 10
    upgrades_per_min: int = 30
    connections_per_user: int = 10
    invalid_frames_before_close: int = 50
    # Per-user token buckets of the other frame types (message.send and typing above).
    conversation_ops_per_s: float = 1.0  # conversation.create, add_members, remove_members
    conversation_ops_burst: int = 20
    receipts_per_s: float = 50.0  # message.delivered, receipt.read
    receipts_burst: int = 200
    syncs_per_s: float = 1.0
    syncs_burst: int = 10
    # presence.subscribe / presence.query cost one token per user named (at least one).
    presence_users_per_s: float = 100.0
    presence_users_burst: int = 1000
    # Users one session may watch with presence.subscribe: each watch is a row entry in the
    # workers' presence_subscribers table until the session closes.
    presence_max_watched: int = 1000
    pings_per_s: float = 2.0
    pings_burst: int = 20
    # REST calls: per authenticated user, and per client IP (unauthenticated calls too).
    rest_per_s: float = 10.0
    rest_burst: int = 50
    rest_ip_per_s: float = 50.0
    rest_ip_burst: int = 200
    # A session's outbound queue, in bytes of queued frames (the frame count is capped apart).
    max_queued_bytes: int = 4 * 1024 * 1024
    # Topology
    topic_prefix: str = "chat"
    conversation_partitions: int = 8
    user_partitions: int = 8
    deliver_partitions: int = 8  # = the number of edge slots
    worker_app_id: str = "chat-worker"
    worker_web_port: int = 6066
    worker_data_dir: str = ".data/faust"  # Faust's local state (tables are rebuilt from changelogs)
    table_standby_replicas: int = 0  # docs/performance.md: standbys cost every message latency
    # `chatctl replay tables` runs a worker this way: it rebuilds its tables from the input
    # topics and writes nothing else (no messages, fan-out, deliveries, timers or Redis).
    worker_rebuild: bool = False
    replication_factor: int = 1
    inbox_max_per_conversation: int = 200
    # Groups larger than this do not broadcast `delivered` receipts live (read receipts still
    # go to everyone; REST answers every cursor): n members confirming each message cost n x n
    # frames.
    delivered_receipts_max_members: int = 32
    # Bytes of pending messages one user's inbox row keeps (the oldest beyond it are read from
    # the store on sync), and of messages one sync answer carries (further conversations are
    # answered with ranges the edge reads from the store). Both keep records far below the
    # broker's 1 MiB record limit whatever users send.
    inbox_max_bytes: int = 256 * 1024
    sync_max_bytes: int = 256 * 1024
    # Internal records (chat.commands, chat.users, chat.deliver) bundle many events; a bundle
    # is split beyond this many bytes.
    bundle_max_bytes: int = 512 * 1024
    dedup_window: int = 256
    # Moderation (docs/moderation.md). The inline rules run in the router before a message is
    # sequenced; false skips them (a measurement switch, not a production setting).
    moderation_rules: bool = True
    # Strikes against a user: the first is a warning, the second mutes for this long, and each
    # further one for six times longer, up to a week.
    moderation_mute_base_s: int = 600
    # Users with a sanction or strikes that one router partition's policy row keeps (the row is
    # one record: at ~60 bytes each this stays far below the broker's record limit). Expired
    # mutes with the fewest strikes make room first.
    moderation_max_sanctions: int = 5000
    moderation_max_terms: int = 1000
    moderation_max_domains: int = 1000
    # message.report frames per user (report floods).
    reports_per_s: float = 0.2
    reports_burst: int = 10
    # Media (docs/media.md): bytes go to an S3-compatible object store, never through the edges
    # or Kafka. The edges and the media processor reach the store at the endpoint; clients
    # upload to and download from the public endpoint (empty: the same), which the presigned
    # URLs name and the web client's Content-Security-Policy allows.
    media_s3_endpoint: str = "http://127.0.0.1:8333"
    media_s3_public_endpoint: str = ""
    media_s3_region: str = "us-east-1"
    media_s3_access_key: str = "chat-dev"
    media_s3_secret_key: str = DEV_S3_SECRET
    media_bucket: str = "chat-media"
    # One upload's largest size: the presigned POST policy's content-length-range carries it
    # (with the declared size), so the store itself refuses a larger body.
    media_max_bytes: int = 25 * 1024 * 1024
    # Types accepted, as sniffed from the bytes by the media processor (the declared type must
    # match what the bytes are).
    media_allowed_types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
    )
    # An upload not completed this long after its URL was issued expires and is deleted.
    media_upload_ttl_s: int = 300
    media_download_ttl_s: int = 300
    # Decompression bombs: an image whose header declares more pixels than this is rejected
    # before any pixel is decoded (a 40 Mpx RGBA image decodes to 160 MB).
    media_max_pixels: int = 40_000_000
    media_thumbnail_px: int = 320
    # Bytes one user may request uploads for per UTC day.
    media_quota_bytes_per_day: int = 1024 * 1024 * 1024
    media_uploads_per_s: float = 1.0
    media_uploads_burst: int = 20
    media_downloads_per_s: float = 20.0
    media_downloads_burst: int = 100
    media_max_attachments: int = 10
    # How long POST /v1/media/{id}/complete waits for the verdict before answering 202.
    media_complete_wait_s: float = 10.0
    # Ready media that no message references this long after they became ready are deleted.
    media_unreferenced_ttl_s: int = 24 * 3600
    media_processor_group: str = "chat-media-processor"
    media_processor_concurrency: int = 2
    media_processor_port: int = 6072
    # The detectors behind delivery (docs/moderation.md#classifier, #spam-detection): the
    # classifier and spam agents. False leaves them out of the workers (a measurement switch).
    moderation_agents: bool = True
    # The classifier's probability of offensive language: at or above the first a message is
    # flagged for a moderator, at or above the second it is redacted and the sender struck.
    moderation_flag_threshold: float = 0.9
    moderation_redact_threshold: float = 0.99
    # A campaign: one text (or a near-duplicate) or one link in at least this many
    # conversations within the window, at least this many conversations per distinct sender
    # (people sharing a popular link each send it to a few conversations, a spammer to many).
    spam_window_s: int = 600
    spam_min_conversations: int = 10
    spam_conversations_per_sender: int = 5
    # Texts shorter than this (after folding case and punctuation) are not compared: "ok",
    # "thanks!" and "see you" are sent everywhere by everyone.
    spam_min_text_chars: int = 24
    # A new account writing to this many conversations within the burst window.
    spam_burst_conversations: int = 10
    spam_burst_window_s: int = 60
    # Messages one sender's row of the spam detector remembers (and sightings one signature's
    # row keeps waiting for a campaign).
    spam_row_max_entries: int = 200
    # Sink
    sink_group: str = "chat-mongo-sink"
    sink_batch: int = 500
    sink_metrics_port: int = 6070
    # make run: start (and at exit stop) the local services; false uses the running ones.
    run_stack: bool = True
    # Logging
    log_level: str = "INFO"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def resolved_jwt_algorithms(self) -> list[str]:
        if self.jwt_algorithms:
            return list(self.jwt_algorithms)
        return ["RS256", "ES256"] if self.jwt_public_key else ["HS256"]


def _convert(raw: str, default: Any, name: str) -> Any:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(
            f"CHAT_{name.upper()}={raw!r} is not a valid {type(default).__name__}"
        ) from exc
    return raw


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``CHAT_<FIELD>`` variables; ``overrides`` win (used by tests)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = f"CHAT_{f.name.upper()}"
        if key in env:
            values[f.name] = _convert(env[key], f.default, f.name)
    # Short, conventional aliases documented in the README.
    if "CHAT_JWT_PUBLIC_KEY_FILE" in env and "jwt_public_key" not in values:
        with open(env["CHAT_JWT_PUBLIC_KEY_FILE"], encoding="utf-8") as fh:
            values["jwt_public_key"] = fh.read()
    values.update(overrides)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.deliver_partitions < 1:
        raise SettingsError("CHAT_DELIVER_PARTITIONS must be at least 1")
    if settings.edge_slot >= settings.deliver_partitions:
        raise SettingsError(
            f"CHAT_EDGE_SLOT={settings.edge_slot} must be below "
            f"CHAT_DELIVER_PARTITIONS={settings.deliver_partitions}"
        )
    for name in (
        "messages_per_s",
        "typing_per_s",
        "upgrades_per_min",
        "messages_burst",
        "typing_burst",
        "inbox_max_per_conversation",
        "delivered_receipts_max_members",
        "inbox_max_bytes",
        "sync_max_bytes",
        "bundle_max_bytes",
        "dedup_window",
        "connections_per_user",
        "max_group_members",
        "edge_listen_backlog",
        "redis_max_connections",
        "conversation_ops_per_s",
        "conversation_ops_burst",
        "receipts_per_s",
        "receipts_burst",
        "syncs_per_s",
        "syncs_burst",
        "presence_users_per_s",
        "presence_users_burst",
        "presence_max_watched",
        "pings_per_s",
        "pings_burst",
        "rest_per_s",
        "rest_burst",
        "rest_ip_per_s",
        "rest_ip_burst",
        "max_queued_bytes",
        "ws_ticket_ttl_s",
        "media_max_bytes",
        "media_upload_ttl_s",
        "media_download_ttl_s",
        "media_max_pixels",
        "media_thumbnail_px",
        "media_quota_bytes_per_day",
        "media_uploads_per_s",
        "media_uploads_burst",
        "media_downloads_per_s",
        "media_downloads_burst",
        "media_max_attachments",
        "media_complete_wait_s",
        "media_unreferenced_ttl_s",
        "media_processor_concurrency",
    ):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"CHAT_{name.upper()} must be positive")
    try:
        trusted_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"CHAT_TRUSTED_PROXIES: {exc}") from None
    for origin in settings.web_edges:
        if not _ORIGIN_RE.fullmatch(origin):
            raise SettingsError(
                f"CHAT_WEB_EDGES: {origin!r} is not an origin (http(s)://host[:port], no path)"
            )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SettingsError("CHAT_TLS_CERT and CHAT_TLS_KEY must be set together")
    _validate_kafka_security(settings)
    _validate_detectors(settings)


def _validate_detectors(settings: Settings) -> None:
    for name in (
        "spam_window_s",
        "spam_min_conversations",
        "spam_conversations_per_sender",
        "spam_min_text_chars",
        "spam_burst_conversations",
        "spam_burst_window_s",
        "spam_row_max_entries",
    ):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"CHAT_{name.upper()} must be positive")
    flag, redact = settings.moderation_flag_threshold, settings.moderation_redact_threshold
    if not 0 < flag <= redact <= 1:
        raise SettingsError(
            "CHAT_MODERATION_FLAG_THRESHOLD and CHAT_MODERATION_REDACT_THRESHOLD must satisfy "
            f"0 < flag <= redact <= 1 (are {flag} and {redact})"
        )


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _validate_kafka_security(settings: Settings) -> None:
    """Refuse combinations that would silently run less secure than configured (a CA file or a
    password that the chosen protocol never uses). The files are opened when the clients are
    made (chat/kafka_security.py), where a missing one is reported."""
    protocol = settings.kafka_security_protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise SettingsError(
            f"CHAT_KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of "
            + ", ".join(KAFKA_SECURITY_PROTOCOLS)
        )
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    if sasl:
        if settings.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise SettingsError(
                f"CHAT_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} must be one of "
                + ", ".join(KAFKA_SASL_MECHANISMS)
            )
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise SettingsError(
                f"CHAT_KAFKA_SECURITY_PROTOCOL={protocol} needs CHAT_KAFKA_SASL_USERNAME and "
                "CHAT_KAFKA_SASL_PASSWORD"
            )
    elif settings.kafka_sasl_username or settings.kafka_sasl_password:
        raise SettingsError(
            f"CHAT_KAFKA_SASL_USERNAME/CHAT_KAFKA_SASL_PASSWORD are set, but "
            f"CHAT_KAFKA_SECURITY_PROTOCOL={protocol} sends no credentials (SASL_SSL?)"
        )
    files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    if not tls:
        for name in files:
            if getattr(settings, name):
                raise SettingsError(
                    f"CHAT_{name.upper()} is set, but CHAT_KAFKA_SECURITY_PROTOCOL={protocol} "
                    "does not use TLS (SSL or SASL_SSL?)"
                )
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise SettingsError(
            "CHAT_KAFKA_SSL_CERTFILE and CHAT_KAFKA_SSL_KEYFILE must be set together"
        )


# An origin as a browser writes it: scheme, host, optional port, nothing else (it goes into a
# Content-Security-Policy header, so no spaces, quotes or semicolons can pass).
_ORIGIN_RE = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: tuple[str, ...]) -> list[IPNetwork]:
    """``CHAT_TRUSTED_PROXIES`` entries as networks: an address is a /32 (or /128)."""
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def describe() -> list[tuple[str, str]]:
    """Every variable with its default, for the README and ``chatctl env``."""
    out = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        out.append((f"CHAT_{f.name.upper()}", str(default)))
    return out
