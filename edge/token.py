"""Mint a development token: ``python -m edge.token alice`` (uses CHAT_JWT_SECRET)."""

from __future__ import annotations

import argparse

from chat.settings import load_settings
from edge.auth import mint_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user", help="user id (the token's sub)")
    parser.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    args = parser.parse_args()
    token, _ = mint_token(load_settings(), args.user, args.ttl)
    print(token)


if __name__ == "__main__":
    main()
