"""Kafka secured: the whole app (two edges, a worker, the sink, the topics job, chatctl) with
every Kafka client on the local broker's SASL_SSL listener (SCRAM-SHA-512 over TLS, a local CA;
ops/stack/stack.sh makes them), and what a client with a wrong password or an untrusted CA gets.

The app runs on a topic prefix, groups, database and ports of its own (beside the suite's
PLAINTEXT app on the same broker). Its bootstrap is the SASL_SSL port alone, and that listener
advertises only itself, so no client of this app can fall back to PLAINTEXT unnoticed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chat.kafka_security import KafkaAccessRefused, check_kafka_access
from chat.settings import Settings, load_settings
from edge.auth import mint_token
from ops.supervisor import PYTHON, REPO, Supervisor, edge_spec, sink_spec, worker_spec
from ops.topics import ensure_topics
from tests.client import ChatClient
from tests.conftest import LANE, NAMESPACE, PORT_SHIFT, STACK, TEST_ENV
from tests.integration.helpers import create_direct, eventually, stored_messages, synced

DATA_DIR = Path(os.environ.get("CHAT_DATA_DIR", REPO / ".data"))
CLIENT_ENV = DATA_DIR / "kafka" / "tls" / "client.env"
PREFIX = f"{NAMESPACE}sasl"
# Ports of this module's app: clear of the suite's (28080.., 26066.., 26070 + 100 * lane).
EDGE_PORTS = (28090 + PORT_SHIFT, 28091 + PORT_SHIFT)
WORKER_PORT = 26076 + PORT_SHIFT
SINK_PORT = 26078 + PORT_SHIFT


def read_client_env() -> dict[str, str]:
    """The CHAT_KAFKA_* settings stack.sh wrote for its SASL_SSL listener."""
    lines = CLIENT_ENV.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.startswith("CHAT_"))


@pytest.fixture(scope="module")
def sasl_env() -> dict[str, str]:
    # Idempotent: starts the stack if needed and creates the TLS files and SCRAM user.
    subprocess.run([STACK, "start"], check=True)
    kafka = read_client_env()
    assert kafka["CHAT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", kafka.keys()
    host, _, port = kafka["CHAT_KAFKA_BOOTSTRAP"].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        pytest.fail(f"no SASL_SSL listener on {host}:{port}: 'ops/stack/stack.sh restart kafka'")
    return {
        **TEST_ENV,
        "CHAT_TOPIC_PREFIX": PREFIX,
        "CHAT_WORKER_APP_ID": f"{PREFIX}-worker",
        "CHAT_SINK_GROUP": f"{PREFIX}-sink",
        "CHAT_MONGO_DB": PREFIX,
        # One standby-less worker: this app proves the wiring, the suite proves the rest.
        "CHAT_TABLE_STANDBY_REPLICAS": "0",
        **kafka,
    }


@pytest.fixture(scope="module")
def sasl_app(sasl_env: dict[str, str]) -> Iterator[tuple[Settings, list[str]]]:
    settings = load_settings({**os.environ, **sasl_env})
    asyncio.run(ensure_topics(settings))  # the admin client, over SASL_SSL
    log_dir = DATA_DIR / "logs" / f"test-sasl{LANE}"
    sup = Supervisor(log_dir=log_dir, base_env={**os.environ, **sasl_env})
    try:
        sup.start(worker_spec(0, {}, WORKER_PORT))
        sup.start(sink_spec({}, SINK_PORT))
        for i, port in enumerate(EDGE_PORTS):
            sup.start(edge_spec(i, {}, port, i))
        sup.wait_ready(timeout=180)
        yield settings, [f"http://127.0.0.1:{p}" for p in EDGE_PORTS]
    finally:
        sup.stop_all()


async def test_one_message_end_to_end_over_sasl_ssl(sasl_app, user_ids) -> None:
    settings, edges = sasl_app
    alice = await ChatClient.connect(
        edges[0], mint_token(settings, user_ids.alice)[0], user_ids.alice
    )
    bob = await ChatClient.connect(edges[1], mint_token(settings, user_ids.bob)[0], user_ids.bob)
    try:
        for client in (alice, bob):
            await synced(client)  # edge -> chat.users -> sessions agent -> chat.deliver -> edge
        cid = (await create_direct(alice, bob.user))["id"]
        ack = await alice.request(
            {"type": "message.send", "conversation_id": cid, "client_msg_id": "m1", "body": "hi"},
            timeout=30,
        )
        assert ack["type"] == "message.ack", ack
        # edge 0 -> chat.commands -> router -> chat.deliver -> edge 1
        await bob.wait_for(lambda f: len(bob.messages(cid)) >= 1, timeout=30)
        assert [m["body"] for m in bob.messages(cid)] == ["hi"]
        # chat.messages -> the sink -> MongoDB
        stored = await eventually(
            lambda: stored_messages(settings.mongo_url, settings.mongo_db, cid), timeout=30
        )
        assert [(m["seq"], m["body"]) for m in stored] == [(ack["seq"], "hi")]
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)


def test_chatctl_reads_topics_over_sasl_ssl(sasl_app, sasl_env) -> None:
    out = subprocess.run(
        [PYTHON, "-m", "ops.chatctl", "topics"],
        cwd=REPO,
        env={**os.environ, **sasl_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"{PREFIX}.commands" in out.stdout


def test_processes_refuse_to_start_with_a_wrong_password(sasl_env) -> None:
    """Edge, worker, sink and the topics job: exit 2 with one line naming the cause, instead of
    retrying a generic 'Unable to bootstrap' forever."""
    env = {**os.environ, **sasl_env, "CHAT_KAFKA_SASL_PASSWORD": "wrong-password"}
    env["CHAT_EDGE_PORT"] = str(EDGE_PORTS[0])
    env["CHAT_WORKER_WEB_PORT"] = str(WORKER_PORT)
    env["CHAT_SINK_METRICS_PORT"] = str(SINK_PORT)
    procs = {
        module: subprocess.Popen(
            [PYTHON, "-m", module],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for module in ("edge", "topologies", "sinks", "ops.topics")
    }
    deadline = time.monotonic() + 60
    try:
        for module, proc in procs.items():
            output, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 2, (module, output[-2000:])
            assert "refused the SASL credentials of user 'chat' (SCRAM-SHA-512)" in output, (
                module,
                output[-2000:],
            )
            assert "wrong-password" not in output  # the password is never logged
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


async def test_check_kafka_access_names_the_cause(sasl_env) -> None:
    settings = load_settings({**os.environ, **sasl_env})
    await check_kafka_access(settings)  # the right credentials pass

    with pytest.raises(KafkaAccessRefused, match="refused the SASL credentials"):
        await check_kafka_access(replace(settings, kafka_sasl_password="wrong"))
    # SCRAM-SHA-256 is enabled too, but a user unknown to the broker is refused like a wrong
    # password (SCRAM does not say which).
    with pytest.raises(KafkaAccessRefused, match="refused the SASL credentials"):
        await check_kafka_access(
            replace(settings, kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="nobody")
        )
    # Without the local CA the broker's certificate is not trusted.
    with pytest.raises(KafkaAccessRefused, match="certificate verify failed"):
        await check_kafka_access(replace(settings, kafka_ssl_cafile=""))
    # SCRAM-SHA-256 and a client certificate (mutual TLS) from the same CA are accepted.
    tls = Path(settings.kafka_ssl_cafile).parent
    await check_kafka_access(
        replace(
            settings,
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_ssl_certfile=str(tls / "client.crt"),
            kafka_ssl_keyfile=str(tls / "client.key"),
        )
    )
