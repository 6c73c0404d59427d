"""The web client in a real browser (Debian's headless Chromium, driven by playwright-core)
against the test app's two edge nodes: alice and bob chat across nodes, see typing, ticks and
presence, and bob gets what he missed while offline; bob reports a message, a moderator redacts
it from the queue and bob sees it removed, and a message the rules block shows as not sent.
Screenshots land in test-results/."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from ops.supervisor import REPO
from tests.integration.conftest import App

E2E = REPO / "web" / "e2e" / "chat.e2e.mjs"


async def test_web_client_end_to_end_in_chromium(app: App) -> None:
    assert (REPO / "web" / "dist" / "index.html").exists(), "build the web client: make web"
    assert (REPO / "web" / "node_modules" / "playwright-core").exists(), "run: cd web && npm ci"
    chromium = shutil.which("chromium")
    assert chromium, (
        "Debian's chromium is missing: make test installs it (apt-get install chromium)"
    )
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(E2E),
        cwd=REPO,
        env={
            **os.environ,
            "E2E_EDGE_A": app.edges[0],
            "E2E_EDGE_B": app.edges[1],
            "CHROMIUM_PATH": chromium,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    text = out.decode(errors="replace")
    sys.stdout.write(text)
    assert proc.returncode == 0, text[-4000:]
    assert "not ok" not in text
    assert " 0 failed" in text
