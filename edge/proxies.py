"""Who the client is when a trusted proxy (nginx, a cloud balancer) stands in between.

A proxy in ``CHAT_TRUSTED_PROXIES`` appends the address it saw to ``X-Forwarded-For`` and says
in ``X-Forwarded-Proto`` whether the client came over TLS; anyone else's headers are ignored.

The answers are computed when asked (the per-IP limits, the HSTS header) rather than stored on
the request by a middleware: a WebSocket handler holds its request for the life of the
connection, and a cloned request or a filled-in request dict would be kept by every idle one.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from chat.settings import IPNetwork, trusted_networks


class TrustedProxies:
    def __init__(self, proxies: tuple[str, ...]) -> None:
        self.networks = trusted_networks(proxies)

    def client_address(self, request: web.Request) -> str:
        """The address the per-IP limits count against."""
        return client_ip(request.remote, request.headers.get("X-Forwarded-For"), self.networks)

    def via_tls(self, request: web.Request) -> bool:
        """The client reached a trusted proxy over TLS (the proxy says so)."""
        proto = request.headers.get("X-Forwarded-Proto", "")
        return (
            proto.split(",")[-1].strip().lower() == "https"
            and request.remote is not None
            and is_trusted(request.remote, self.networks)
        )


def client_ip(peer: str | None, forwarded: str | None, trusted: list[IPNetwork]) -> str:
    """The client's IP: the peer, or the last X-Forwarded-For hop when the peer is a trusted
    proxy (nginx appends the address it saw; earlier hops are client-controlled)."""
    if not peer:
        return "?"
    if forwarded and is_trusted(peer, trusted):
        return forwarded.split(",")[-1].strip() or peer
    return peer


def is_trusted(peer: str, trusted: list[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False  # not an IP (a unix socket): never a trusted proxy
    return any(address in network for network in trusted)
