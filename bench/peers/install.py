"""Installs what the peers need, into caches outside the clone (``python -m bench.peers.install``).

- ``seed``: its npm packages, from bench/peers/seed/package-lock.json, into
  ``~/.cache/kchat/bench-seed-<lock hash>/node_modules`` (npm's own cache: ~/.cache/npm);
- ``centrifugo``: ``go install github.com/centrifugal/centrifugo/v6@<version>`` into
  ``~/.cache/kchat/centrifugo-<version>/`` (Go's module and build caches at their defaults).

``make bench`` runs it; the bench calls the same functions for the peers it is asked to run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ops.supervisor import REPO

CACHE = Path(os.environ.get("CHAT_CACHE_DIR", Path.home() / ".cache" / "kchat"))
SEED_SRC = REPO / "bench" / "peers" / "seed"
CENTRIFUGO_VERSION = "6.9.1"
CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6"


def seed_dir() -> Path:
    """Where the seed's node_modules live: keyed by the lock file, so a change reinstalls."""
    digest = hashlib.sha256((SEED_SRC / "package-lock.json").read_bytes()).hexdigest()[:12]
    return CACHE / f"bench-seed-{digest}"


def install_seed() -> str:
    target = seed_dir()
    if (target / "node_modules" / ".installed").exists():
        return f"seed: npm packages in {target}"
    if shutil.which("npm") is None:
        raise RuntimeError("the seed peer needs Node.js 20 and npm")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(SEED_SRC / name, target / name)
    env = {**os.environ}
    env.setdefault("npm_config_cache", str(Path.home() / ".cache" / "npm"))
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline", "--omit=dev"],
        cwd=target,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (target / "node_modules" / ".installed").touch()
    return f"seed: installed npm packages into {target}"


def centrifugo_bin() -> Path:
    return CACHE / f"centrifugo-{CENTRIFUGO_VERSION}" / "centrifugo"


def install_centrifugo() -> str:
    binary = centrifugo_bin()
    if binary.exists():
        return f"centrifugo: {binary}"
    if shutil.which("go") is None:
        raise RuntimeError("the centrifugo peer is built with Go (go install)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # A temporary GOBIN inside the cache, moved into place when complete: an interrupted build
    # leaves no half-written binary behind.
    tmp = binary.parent / "build"
    # The release builds stamp their version with -X; `go install` alone reports 0.0.0.
    version_flag = f"-X {CENTRIFUGO_MODULE}/internal/build.Version={CENTRIFUGO_VERSION}"
    subprocess.run(
        ["go", "install", "-ldflags", version_flag, f"{CENTRIFUGO_MODULE}@v{CENTRIFUGO_VERSION}"],
        env={**os.environ, "GOBIN": str(tmp), "GOFLAGS": "-buildvcs=false"},
        cwd=binary.parent,
        check=True,
    )
    (tmp / "centrifugo").rename(binary)
    tmp.rmdir()
    return f"centrifugo: built {binary}"


INSTALLERS = {"seed": install_seed, "centrifugo": install_centrifugo}


def main(argv: list[str]) -> int:
    names = [n for arg in argv for n in arg.split(",") if n] or list(INSTALLERS)
    for name in names:
        if name in INSTALLERS:
            print(INSTALLERS[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
