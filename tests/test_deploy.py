"""The deployment in ``deploy/``: its compose file read and checked, and its parts run for real.

Docker does not run here. The compose file is checked for its services, health checks,
start order and the environment the servers get. The parts that do not need Docker run:
``cluster-init.sh`` builds a cluster of three masters with a replica each out of six local
nodes started with ``valkey.conf``, and a server that waits for the replicas runs on it;
HAProxy runs ``haproxy.cfg`` in front of a server, carries a room socket and hands the
server each client's own address.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from server import metrics
from server.engine import engine_binary, free_port
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import (
    JWT_SECRET,
    ROOT,
    WEBHOOK_SECRET,
    Api,
    delete_prefix,
    running_server,
    server_env,
    unique,
)
from tests.test_dockerfile import healthcheck_argv, stages
from tests.wsclient import RoomSocket

DEPLOY = ROOT / "deploy"
NODES = tuple(f"valkey-{n}" for n in range(1, 7))
MASTERS = 3
SERVERS = ("server-1", "server-2")
CLUSTER_URL = "redis+cluster://" + ",".join(f"{name}:6379" for name in NODES)
# Read outside server/settings.py: by uvicorn (README, "Configuration") and by the metrics.
OTHER_VARIABLES = {"FORWARDED_ALLOW_IPS", metrics.MULTIPROCESS_ENV}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines, as compose reads an env file (comments and blanks skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            values[name.strip()] = value
    return values


def haproxy_config() -> str:
    return (DEPLOY / "haproxy.cfg").read_text()


class RecordingEnv(Mapping[str, str]):
    """An environment that notes every variable read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def settings_variables() -> set[str]:
    """Every variable ``Settings.from_env`` reads."""
    env = RecordingEnv({"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET})
    Settings.from_env(env)
    assert "GIFTING_PORT" in env.read and "GIFTING_WORKERS" in env.read
    return env.read


# -- the compose file ------------------------------------------------------------------------


def test_compose_runs_two_servers_a_six_node_cluster_and_a_balancer() -> None:
    assert set(services()) == {*NODES, "cluster-init", *SERVERS, "lb"}
    for name in (*NODES, *SERVERS, "lb"):
        assert "test" in services()[name].get("healthcheck", {}), f"{name} has no health check"
    assert services()["cluster-init"]["restart"] == "no", "a one-shot service"


def test_the_cluster_nodes_run_in_cluster_mode_and_announce_their_names() -> None:
    config = (DEPLOY / "valkey.conf").read_text()
    assert re.search(r"^cluster-enabled yes$", config, re.M)
    assert re.search(r"^appendonly yes$", config, re.M)
    volumes = set()
    for name in NODES:
        node = services()[name]
        assert re.match(r"^(valkey/valkey:8|redis:7)", node["image"])
        command = node["command"]
        assert command[command.index("--cluster-announce-hostname") + 1] == name
        assert "./valkey.conf:/usr/local/etc/valkey/valkey.conf:ro" in node["volumes"]
        assert command[1] == "/usr/local/etc/valkey/valkey.conf"
        volumes |= {volume for volume in node["volumes"] if volume.endswith(":/data")}
    assert len(volumes) == len(NODES), "each node keeps its data in a volume of its own"


def test_services_start_in_order_nodes_then_cluster_then_servers_then_balancer() -> None:
    init = services()["cluster-init"]
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in NODES}
    assert init["environment"]["VALKEY_NODES"].split() == [f"{name}:6379" for name in NODES]
    # valkey-cli makes len(NODES) / (1 + replicas) masters
    assert len(NODES) // (1 + int(init["environment"]["VALKEY_REPLICAS"])) == MASTERS
    assert init["command"] == ["sh", "/cluster-init.sh"]
    assert "./cluster-init.sh:/cluster-init.sh:ro" in init["volumes"]
    for name in SERVERS:
        depends = services()[name]["depends_on"]
        assert depends == {"cluster-init": {"condition": "service_completed_successfully"}}
    lb = services()["lb"]
    assert lb["depends_on"] == {name: {"condition": "service_healthy"} for name in SERVERS}


def test_the_servers_are_the_image_on_the_cluster_with_known_settings_only() -> None:
    known = settings_variables() | OTHER_VARIABLES
    example = env_file(DEPLOY / ".env.example")
    lb_address = services()["lb"]["networks"]["edge"]["ipv4_address"]
    (_, final) = stages()
    for name in SERVERS:
        server = services()[name]
        assert server["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (DEPLOY / server["build"]["context"] / server["build"]["dockerfile"]).resolve() == (
            ROOT / "Dockerfile"
        )
        assert server["env_file"] == ".env"
        environment = server["environment"]
        assert environment["GIFTING_REDIS_URL"] == CLUSTER_URL
        # Each master has one replica, and a money write waits for it.
        assert environment["GIFTING_REPLICA_ACKS"] == "1"
        # The balancer is the one proxy whose X-Forwarded-For the servers believe.
        assert environment["FORWARDED_ALLOW_IPS"] == lb_address
        assert server["tmpfs"] == [environment[metrics.MULTIPROCESS_ENV]], "empty at every start"
        unknown = (set(environment) | set(example)) - known
        assert not unknown, f"{name} gets variables the server does not read: {sorted(unknown)}"
        assert server["healthcheck"]["test"] == ["CMD", *healthcheck_argv(final)]
        assert set(server["networks"]) == {"edge", "engine"}
    assert compose()["networks"]["engine"]["internal"] is True, "the cluster is reachable only inside"
    for name in NODES:
        assert services()[name]["networks"] == ["engine"]


def test_the_example_env_file_holds_placeholders_that_a_server_refuses() -> None:
    example = env_file(DEPLOY / ".env.example")
    for name in ("GIFTING_JWT_SECRET", "GIFTING_WEBHOOK_SECRET"):
        assert example[name].startswith("replace-me"), f"{name} must be a placeholder, never a secret"
        secrets = {"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET}
        with pytest.raises(SettingsError, match=f"{name} is public"):
            Settings.from_env({**example, **secrets, name: example[name], "GIFTING_REDIS_URL": CLUSTER_URL})
    # Filled in, the rest of the file passes the settings checks.
    real = {"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET}
    settings = Settings.from_env({**example, **real, "GIFTING_REDIS_URL": CLUSTER_URL})
    assert settings.workers == int(example["GIFTING_WORKERS"])
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "deploy/.env, with the real secrets, must be ignored by git"


def test_the_balancer_checks_readyz_and_forwards_websockets_and_client_addresses() -> None:
    config = haproxy_config()
    lines = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "mode http" in lines, "HTTP mode passes Upgrade and Connection through, then tunnels"
    assert not [
        line for line in lines if re.search(r"(del|set|replace)-header\s+(Upgrade|Connection)\b", line)
    ]
    assert not [line for line in lines if line.startswith(("option httpclose", "option http-server-close"))]
    tunnel = [line for line in lines if re.fullmatch(r"timeout tunnel \d+[smh]", line)]
    assert tunnel, "open sockets must outlive timeout client/server"
    assert "option forwardfor" in lines and "http-request del-header X-Forwarded-For" in lines
    assert "option httpchk GET /readyz" in lines and "http-check expect status 200" in lines
    servers = [line.split() for line in lines if line.startswith("server ")]
    assert [server[2] for server in servers] == [f"{name}:8000" for name in SERVERS]
    assert any(line.startswith("default-server check") for line in lines)
    assert "bind :8080" in lines and services()["lb"]["ports"] == ["8000:8080"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services()["lb"]["volumes"]


def test_the_cluster_init_script_is_valid_shell() -> None:
    result = subprocess.run(["sh", "-n", str(DEPLOY / "cluster-init.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_haproxy_accepts_the_config() -> None:
    haproxy = require_haproxy()
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the parts, run ---------------------------------------------------------------------------


def require_haproxy() -> str:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is missing; .ci/run installs Debian's haproxy package")
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    return haproxy


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10_000 < 65_536:
            with contextlib.closing(socket.socket()) as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10_000))
                except OSError:
                    continue
            return port


@pytest.fixture
def cluster_nodes(tmp_path: Path) -> Iterator[list[str]]:
    """As many engine nodes as compose.yaml runs, started with deploy/valkey.conf, not yet a
    cluster: host:port each."""
    processes: list[subprocess.Popen[bytes]] = []
    nodes = []
    try:
        for n in range(len(NODES)):
            port, data = cluster_port(), tmp_path / f"node{n}"
            data.mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        engine_binary(),
                        str(DEPLOY / "valkey.conf"),
                        *("--port", str(port), "--dir", str(data), "--bind", "127.0.0.1"),
                        *("--cluster-announce-hostname", "127.0.0.1", "--appendfsync", "everysec"),
                        *("--logfile", str(data / "valkey.log")),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            nodes.append(f"127.0.0.1:{port}")
        for process, node in zip(processes, nodes, strict=True):
            wait_for_node(process, node)
        yield nodes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def wait_for_node(process: subprocess.Popen[bytes], node: str, timeout_s: float = 20) -> None:
    host, port = node.split(":")
    deadline = time.monotonic() + timeout_s
    with redis.Redis(host=host, port=int(port), socket_timeout=1) as client:
        while True:
            assert process.poll() is None, f"the node on {node} exited with {process.returncode}"
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return
            assert time.monotonic() < deadline, f"the node on {node} did not answer in {timeout_s} s"
            time.sleep(0.02)


def run_cluster_init(nodes: list[str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VALKEY_NODES": " ".join(nodes),
        "VALKEY_REPLICAS": services()["cluster-init"]["environment"]["VALKEY_REPLICAS"],
        # valkey-cli from the package that ships the engine binary
        "PATH": f"{Path(engine_binary()).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        ["sh", str(DEPLOY / "cluster-init.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def test_cluster_init_builds_the_cluster_once_and_a_server_runs_on_it(
    cluster_nodes: list[str], logs: Path
) -> None:
    first = run_cluster_init(cluster_nodes)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Performing hash slots allocation" in first.stdout
    again = run_cluster_init(cluster_nodes)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Performing hash slots allocation" not in again.stdout, "a second run must leave it as it is"
    # Three masters, each with one replica already in sync when the script exits.
    roles = {}
    for node in cluster_nodes:
        host, port = node.split(":")
        with redis.Redis(host=host, port=int(port), decode_responses=True) as client:
            roles[node] = client.info("replication")
    masters = [node for node, info in roles.items() if info["role"] == "master"]
    assert len(masters) == MASTERS
    assert all(roles[node]["connected_slaves"] == 1 for node in masters)
    assert all(info["master_link_status"] == "up" for info in roles.values() if info["role"] == "slave")

    url = "redis+cluster://" + ",".join(cluster_nodes)
    env = server_env(
        url, "gifting:", GIFTING_REPLICA_ACKS=services()["server-1"]["environment"]["GIFTING_REPLICA_ACKS"]
    )
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        assert http.get("/readyz").status_code == 200
        viewer = unique("v")
        api.buy(viewer, "us_550")
        assert api.coins(viewer) == 550


def lb_config(lb_port: int, monitor_port: int, server_port: int) -> str:
    """deploy/haproxy.cfg with its ports and server addresses moved to this machine's."""
    config = haproxy_config().replace("bind :8080", f"bind 127.0.0.1:{lb_port}")
    config = config.replace("bind :8404", f"bind 127.0.0.1:{monitor_port}")
    for name in SERVERS:
        config = config.replace(f"server {name} {name}:8000", f"server {name} 127.0.0.1:{server_port}")
    assert config.count(f"127.0.0.1:{server_port}") == len(SERVERS)
    return config


@pytest.fixture
def balancer(engine: Engine, tmp_path: Path, logs: Path) -> Iterator[Balancer]:
    """HAProxy with deploy/haproxy.cfg in front of a server that allows each client address
    5 requests (and no more for 1,000 s)."""
    haproxy = require_haproxy()
    prefix = f"{unique('t')}:"
    env = server_env(engine.url, prefix, GIFTING_IP_RATE="0.001", GIFTING_IP_BURST="5")
    try:
        with running_server(env, logs) as server:
            lb_port, monitor_port = free_port(), free_port()
            config = tmp_path / "haproxy.cfg"
            config.write_text(lb_config(lb_port, monitor_port, server.port))
            log_path = logs / f"haproxy-{unique('')}.log"
            with log_path.open("ab") as log:
                process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=log)
            try:
                lb_url = f"http://127.0.0.1:{lb_port}"
                wait_until_ready(f"http://127.0.0.1:{monitor_port}/healthz", process)
                wait_until_ready(f"{lb_url}/readyz", process)
                yield Balancer(lb_url, server.base_url, log_path)
            finally:
                process.terminate()
                process.wait(10)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@dataclass
class Balancer:
    url: str
    server_url: str
    log_path: Path

    def log_line(self, contains: str, timeout_s: float = 10) -> str:
        """The balancer's log line holding ``contains``: HAProxy writes one as a session ends."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if contains in line:
                    return line
            assert time.monotonic() < deadline, f"no log line with {contains!r}"
            time.sleep(0.05)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"haproxy exited with {process.returncode}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{url} not ready after {timeout_s} s"
        time.sleep(0.05)


def client_from(address: str, base_url: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 is this machine)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=5)


@pytest.mark.anyio
async def test_a_room_socket_opens_through_the_balancer_which_logs_no_token(balancer: Balancer) -> None:
    with httpx.Client(base_url=balancer.server_url, timeout=5) as http:
        token = Api(http).token(unique("v"))
    sock = await RoomSocket.open(balancer.url, "demo_carol", token)
    try:
        welcome = await sock.welcome()
        assert welcome["room_id"] == "demo_carol"
        await sock.send({"type": "ping"})
        assert (await sock.wait_for(lambda frame: frame["type"] == "pong"))["type"] == "pong"
    finally:
        await sock.close()
    line = balancer.log_line("/v1/rooms/demo_carol/ws")
    assert " 101 " in line, line
    assert token.split(".")[-1] not in line, "the balancer must not log the token in the query"


def test_the_balancer_gives_each_client_its_own_request_budget(balancer: Balancer) -> None:
    """The server counts the address HAProxy puts in X-Forwarded-For: a client's own, never
    one the client wrote itself, and never the balancer's (which all clients would share)."""
    lb_url = balancer.url
    with client_from("127.0.0.2", lb_url) as first, client_from("127.0.0.3", lb_url) as second:
        assert [first.get("/v1/catalog/gifts").status_code for _ in range(5)] == [200] * 5
        assert first.get("/v1/catalog/gifts").status_code == 429
        spoofed = first.get("/v1/catalog/gifts", headers={"X-Forwarded-For": "127.0.0.9"})
        assert spoofed.status_code == 429, "a client must not choose the address it is counted as"
        assert second.get("/v1/catalog/gifts").status_code == 200
        assert second.get("/metrics").status_code == 404, "metrics are not served to the public"
