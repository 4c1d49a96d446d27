"""A local engine cluster: valkey-server processes in cluster mode on loopback ports.

``EmbeddedCluster(data_dir, masters=3).start()`` starts the masters (and ``replicas`` per
master), spreads the 16,384 hash slots evenly over the masters, joins every node with
``CLUSTER MEET`` and waits until every node reports ``cluster_state:ok``. ``url`` is then a
``redis+cluster://`` URL naming every master, as ``GIFTING_REDIS_URL`` takes it. The test
suite and the benchmarks run the server against it; it is also the quickest way to try
cluster mode on one machine. A production cluster is set up by its operator (see
``deploy/``), never by this module.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.engine import EngineError, _die_with_parent, engine_binary, stop_process

log = logging.getLogger(__name__)

SLOTS = 16_384
# The cluster bus of a node listens on its port + 10000.
BUS_OFFSET = 10_000
# How often a node that exited at start (its port or bus port taken since it was chosen) is
# started again on other ports.
LAUNCH_ATTEMPTS = 3


@dataclass
class ClusterNode:
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, decode_responses=True, retry=Retry(NoBackoff(), 0), socket_timeout=5
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class EmbeddedCluster:
    data_dir: Path
    masters: int = 3
    replicas: int = 0
    fsync: str = "everysec"
    node_timeout_ms: int = 2_000
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[: self.masters])

    def start(self, timeout_s: float = 30.0) -> EmbeddedCluster:
        for i, port in enumerate(cluster_ports(self.masters * (1 + self.replicas))):
            node = ClusterNode(port, (self.data_dir / f"node{i}").resolve())
            node.data_dir.mkdir(parents=True, exist_ok=True)
            self._launch(node)
            self.nodes.append(node)
        try:
            self._form(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, node: ClusterNode) -> None:
        node.process = subprocess.Popen(
            [
                *(engine_binary(), "--port", str(node.port), "--bind", "127.0.0.1"),
                *("--dir", str(node.data_dir)),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--appendonly", "yes", "--appendfsync", self.fsync, "--save", ""),
                # A replica syncs at once rather than after the default 5 s wait for others.
                *("--repl-diskless-sync-delay", "0"),
                *("--logfile", str(node.data_dir / "engine.log"), "--protected-mode", "yes"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def restart(self, node: ClusterNode, timeout_s: float = 30.0) -> None:
        """Start a node that was stopped or killed again, on its port and its files. It
        rejoins the cluster with the role its peers now give it (a failed master comes back
        as a replica of the one promoted in its place)."""
        self._launch(node)
        with node.client() as client:
            wait(lambda: bool(client.ping()), time.monotonic() + timeout_s, f"{node.address} did not restart")

    def _await_started(self, node: ClusterNode, deadline: float) -> None:
        """Wait until ``node`` answers. Its ports were free when chosen, but another process
        may take one before the node binds it, and the node then exits: it is started again
        on other free ports, up to ``LAUNCH_ATTEMPTS`` times."""
        for _ in range(LAUNCH_ATTEMPTS):
            process = node.process
            assert process is not None
            with node.client() as client:
                wait(
                    functools.partial(exited_or_answering, process, client),
                    deadline,
                    f"node {node.address} did not start",
                )
                if process.poll() is None:
                    node.node_id = client.execute_command("CLUSTER MYID")
                    return
            log.warning("cluster node on %s exited at start: %s", node.address, log_tail(node))
            taken = {other.port for other in self.nodes}
            node.port = next(port for port in cluster_ports(len(taken) + 1) if port not in taken)
            (node.data_dir / "nodes.conf").unlink(missing_ok=True)
            self._launch(node)
        raise EngineError(f"node {node.address} exited at start {LAUNCH_ATTEMPTS} times: {log_tail(node)}")

    def _form(self, deadline: float) -> None:
        for node in self.nodes:
            self._await_started(node, deadline)
        step = SLOTS // self.masters
        for i, node in enumerate(self.nodes[: self.masters]):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * step - 1
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", i * step, last)
        with self.nodes[0].client() as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        for node in self.nodes:
            with node.client() as client:
                wait(
                    lambda: int(cluster_info(client)["cluster_known_nodes"]) == len(self.nodes),
                    deadline,
                    f"node {node.address} did not meet every other node",
                )
        for r, node in enumerate(self.nodes[self.masters :]):
            master = self.nodes[r % self.masters]
            with node.client() as client:
                # A node counts a peer among those it knows while still shaking hands with it,
                # before it has the peer's id: until then REPLICATE answers "Unknown node".
                wait(
                    functools.partial(replicate, client, master.node_id),
                    deadline,
                    f"node {node.address} could not replicate {master.address}",
                )
        for node in self.nodes[self.masters :]:
            with node.client() as client:
                wait(
                    lambda: client.info("replication").get("master_link_status") == "up",
                    deadline,
                    f"replica {node.address} never finished its first sync",
                )
        for node in self.nodes:
            with node.client() as client:
                wait(
                    lambda: cluster_info(client)["cluster_state"] == "ok",
                    deadline,
                    f"node {node.address} never reported cluster_state:ok",
                )

    def master_of(self, slot: int) -> ClusterNode:
        """The node that serves ``slot`` now, as the first node that answers sees it."""
        with self.live_node().client() as client:
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise EngineError(f"no node serves slot {slot}")

    def live_node(self) -> ClusterNode:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                return node
        raise EngineError("no node of the cluster is running")

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        """A node replicating ``master`` now, as ``master`` sees it."""
        with master.client() as client:
            # redis-py parses the reply into {"host:port": {...}}
            for address in client.execute_command("CLUSTER REPLICAS", master.node_id):
                port = int(str(address).split("@")[0].rsplit(":", 1)[1])
                return next(node for node in self.nodes if node.port == port)
        raise EngineError(f"node {master.address} has no replica")

    def stop(self) -> None:
        for node in self.nodes:
            process, node.process = node.process, None
            if process is not None:
                stop_process(process, 10)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """``CLUSTER INFO`` as a dict (redis-py hands it over as text or already parsed)."""
    info = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):
        return {str(k): str(v) for k, v in info.items()}
    return dict(line.split(":", 1) for line in str(info).splitlines() if ":" in line)


def replicate(client: redis.Redis, master_id: str) -> bool:
    """Make the node of ``client`` a replica of the master ``master_id``."""
    return bool(client.execute_command("CLUSTER REPLICATE", master_id))


def exited_or_answering(process: subprocess.Popen[bytes], client: redis.Redis) -> bool:
    """Whether ``process`` has exited, or answers ``client`` itself (not whatever else holds its port)."""
    return process.poll() is not None or int(client.info("server")["process_id"]) == process.pid


def log_tail(node: ClusterNode, lines: int = 3) -> str:
    """The last lines of a node's log, to say why it stopped."""
    try:
        text = (node.data_dir / "engine.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


def wait(ready: Callable[[], bool], deadline: float, failure: str) -> None:
    """Poll ``ready()`` until it is true (connection errors and timeouts count as not yet)."""
    while True:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise EngineError(failure)
        time.sleep(0.05)


def cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports that are free, each with its bus port (+10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        with contextlib.closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + BUS_OFFSET > 65_535 or port in ports or not port_free(port + BUS_OFFSET):
            continue
        ports.append(port)
    return ports


def port_free(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
