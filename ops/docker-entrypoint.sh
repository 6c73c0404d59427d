#!/bin/sh
# Entry point of the kchat image: the first argument picks the role.
#
#   edge     one edge node             (python -m edge;       /healthz on CHAT_EDGE_PORT)
#   worker   one stream worker         (python -m topologies; /healthz on CHAT_WORKER_WEB_PORT)
#   sink     the MongoDB sink          (python -m sinks;      /healthz on CHAT_SINK_METRICS_PORT)
#   media    the media processor       (python -m media;      /healthz on CHAT_MEDIA_PROCESSOR_PORT)
#   topics   create the topics, exit   (python -m ops.topics)
#   chatctl  the operator CLI          (python -m ops.chatctl ARGS...)
#   healthcheck   GET /healthz of the role running in this container (the image's HEALTHCHECK)
#
# Anything else is executed as given (e.g. `docker run --rm -it IMAGE sh`).
set -eu

role="${1:-edge}"
[ "$#" -gt 0 ] && shift

case "$role" in
  edge)     module=edge ;;
  worker)   module=topologies ;;
  sink)     module=sinks ;;
  media)    module=media ;;
  topics)   module=ops.topics ;;
  chatctl)  module=ops.chatctl ;;
  healthcheck)
    # No curl in the slim image: python's urllib. The role is found from the command line of
    # the running python process (PID 1 unless the container runs with an init).
    exec python - <<'PY'
import os
import ssl
import sys
import urllib.request

PORTS = {
    "edge": ("CHAT_EDGE_PORT", "8080"),
    "topologies": ("CHAT_WORKER_WEB_PORT", "6066"),
    "sinks": ("CHAT_SINK_METRICS_PORT", "6070"),
    "media": ("CHAT_MEDIA_PROCESSOR_PORT", "6072"),
}


def running_module():
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"-m" and argv[i + 1].decode() in PORTS:
                return argv[i + 1].decode()
    return None


module = running_module()
if module is None:
    sys.exit(0)  # a one-shot role (topics, chatctl): nothing to probe
env_name, default = PORTS[module]
port = os.environ.get(env_name, default)
scheme, context = "http", None
if module == "edge" and os.environ.get("CHAT_TLS_CERT"):
    scheme, context = "https", ssl._create_unverified_context()
try:
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=4,
                                context=context) as resp:
        sys.exit(0 if resp.status == 200 else 1)
except Exception as exc:
    print(f"healthcheck {module} :{port}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
    ;;
  *)        exec "$role" "$@" ;;
esac

# exec: python becomes the process that receives SIGTERM from `docker stop`.
exec python -m "$module" "$@"
