"""nginx in front of the local edges (``make run``, the tests): one address for every client.

It runs Debian's nginx with ops/nginx/nginx.conf.template, the same configuration the compose
file uses (rendered into ops/nginx/nginx.conf), so what clients meet on 127.0.0.1:8000 locally is
what they meet in front of a one-host cluster.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ops.supervisor import REPO, ProcessSpec

TEMPLATE = REPO / "ops" / "nginx" / "nginx.conf.template"
_TEMPLATE_VAR = re.compile(r"\$\{([A-Z_]+)\}")


def render_nginx(template: str, values: dict[str, str]) -> str:
    """envsubst restricted to the template's own variables (nginx's $names are left alone)."""
    missing = set(_TEMPLATE_VAR.findall(template)) - set(values)
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    return _TEMPLATE_VAR.sub(lambda m: values[m.group(1)], template)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"  # root's PATH may lack /usr/sbin
    return found


def nginx_spec(name: str, port: int, edge_ports: tuple[int, int], run_dir: Path) -> ProcessSpec:
    """A supervised nginx on 127.0.0.1:``port`` balancing over the two local edges."""
    nginx = nginx_binary()
    if nginx is None:
        raise FileNotFoundError("nginx is not installed (Debian package nginx; make installs it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(
        render_nginx(
            TEMPLATE.read_text(),
            {
                "LISTEN": f"127.0.0.1:{port}",
                "EDGE_A": f"127.0.0.1:{edge_ports[0]}",
                "EDGE_B": f"127.0.0.1:{edge_ports[1]}",
                "RUN_DIR": str(run_dir),
            },
        )
    )
    argv = [nginx, "-c", str(conf), "-p", f"{run_dir}/", "-e", str(run_dir / "error.log")]
    argv += ["-g", "daemon off;"]
    return ProcessSpec(name, "", {}, f"http://127.0.0.1:{port}/nginx-healthz", argv=argv)
