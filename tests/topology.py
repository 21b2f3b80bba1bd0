"""Real Redis topologies for the tests, started from the ``redis-server`` binary on free ports.

- ``start_cluster``: a Redis Cluster of three primaries (no replicas), its slots spread by
  ``redis-cli --cluster create``; the URL is ``redis+cluster://:pw@host:port,host:port,...``.
- ``start_sentinel_set``: a primary, one replica and three sentinels watching service
  ``authgw``; the URL is ``redis+sentinel://:pw@host:port,host:port,host:port/authgw``.
- ``start_server``: one redis-server that can be killed and started again on the same port.
- ``start_gateway``: ``authgw serve`` (gunicorn master and workers) on a free port.

Everything binds to 127.0.0.1, lives in a temporary folder and stops with ``stop()``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports

BOOT_SECONDS = 20.0


def terminate(process: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGTERM a running ``process`` and wait ``seconds`` for it; then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class Node:
    """One redis-server process of a topology."""

    port: int
    args: list[str]
    workdir: Path
    password: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self, **kw: object) -> redis.Redis:
        options: dict[str, object] = {
            "socket_timeout": 2,
            "socket_connect_timeout": 2,
            "decode_responses": True,
            **kw,
        }
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL: the process dies with no chance to save or hand anything over."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, 5)

    def wait_up(self) -> None:
        def answers() -> bool:
            with self.client() as c:
                return bool(c.ping())

        wait_until(f"redis-server on port {self.port} answering", answers, BOOT_SECONDS)


def start_all(nodes: list[Node]) -> None:
    """Start every node, then wait until each answers (they boot side by side)."""
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_up()


@dataclass
class Topology:
    url: str
    password: str
    nodes: list[Node]
    workdir: Path
    sentinels: list[Node] = field(default_factory=list)
    service: str = "authgw"

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def server_args(binary: str, port: int, workdir: Path, password: str, *extra: str) -> list[str]:
    """A loopback redis-server's command line: no saves, a password, ``extra`` options last."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        password,
        "--masterauth",
        password,
        "--protected-mode",
        "yes",
        # A replica syncs at once instead of waiting for more to join one transfer.
        "--repl-diskless-sync-delay",
        "0",
        *extra,
    ]


def start_cluster(binary: str, primaries: int = 3, *extra: str) -> Topology:
    """A Redis Cluster of ``primaries`` primaries on loopback, ready (``cluster_state:ok``);
    ``extra``: more options for every node."""
    cli = shutil.which("redis-cli", path=os.path.dirname(binary)) or shutil.which("redis-cli")
    if cli is None:
        raise FileNotFoundError("redis-cli is needed to create a cluster")
    password = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="authgw-cluster-"))
    ports = free_ports(2 * primaries)
    nodes = []
    for i in range(primaries):
        port, bus = ports[2 * i], ports[2 * i + 1]
        workdir = root / str(port)
        workdir.mkdir()
        args = server_args(
            binary,
            port,
            workdir,
            password,
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            *extra,
        )
        nodes.append(Node(port, args, workdir, password))
    topology = Topology(
        url="redis+cluster://:{}@{}".format(password, ",".join(f"127.0.0.1:{n.port}" for n in nodes)),
        password=password,
        nodes=nodes,
        workdir=root,
    )
    try:
        start_all(nodes)
        subprocess.run(
            [
                cli,
                "--no-auth-warning",
                "-a",
                password,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=BOOT_SECONDS,
        )

        def cluster_ok() -> bool:
            for node in nodes:
                with node.client() as c:
                    info = c.cluster("info")
                    state = info.get("cluster_state") if isinstance(info, dict) else info
                    if "ok" not in str(state) or int(info.get("cluster_known_nodes", 0)) < primaries:
                        return False
            return True

        wait_until("cluster_state:ok on every node", cluster_ok, BOOT_SECONDS)
    except Exception:
        topology.stop()
        raise
    return topology


def start_sentinel_set(
    binary: str, service: str = "authgw", replicas: int = 2, down_after_ms: int = 1000
) -> Topology:
    """A primary, ``replicas`` replicas and three sentinels (quorum 2) watching ``service``."""
    password = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="authgw-sentinel-"))
    ports = free_ports(4 + replicas)
    primary_port, replica_ports, sentinel_ports = ports[0], ports[1 : 1 + replicas], ports[1 + replicas :]
    nodes = []
    replica_of = ("--replicaof", "127.0.0.1", str(primary_port))
    for port, extra in ((primary_port, ()), *((p, replica_of) for p in replica_ports)):
        workdir = root / str(port)
        workdir.mkdir()
        nodes.append(Node(port, server_args(binary, port, workdir, password, *extra), workdir, password))
    sentinels = []
    for port in sentinel_ports:
        workdir = root / str(port)
        workdir.mkdir()
        conf = workdir / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {workdir}",
                    f"sentinel monitor {service} 127.0.0.1 {primary_port} 2",
                    *(f"sentinel known-replica {service} 127.0.0.1 {p}" for p in replica_ports),
                    f"sentinel auth-pass {service} {password}",
                    f"sentinel down-after-milliseconds {service} {down_after_ms}",
                    f"sentinel failover-timeout {service} 4000",
                    f"sentinel parallel-syncs {service} 1",
                    "",
                ]
            )
        )
        sentinels.append(Node(port, [binary, str(conf), "--sentinel"], workdir, ""))
    hosts = ",".join(f"127.0.0.1:{p}" for p in sentinel_ports)
    topology = Topology(
        url=f"redis+sentinel://:{password}@{hosts}/{service}",
        password=password,
        nodes=nodes,
        workdir=root,
        sentinels=sentinels,
        service=service,
    )
    try:
        start_all(nodes)
        for node in nodes[1:]:
            wait_until("the replicas in sync", functools.partial(_replica_synced, node), BOOT_SECONDS)
        start_all(sentinels)

        def sentinels_see_each_other() -> bool:
            for node in sentinels:
                with node.client() as c:
                    info = c.execute_command("SENTINEL", "MASTER", service)
                    fields = dict(zip(info[::2], info[1::2], strict=True)) if isinstance(info, list) else info
                    if int(fields["num-other-sentinels"]) < 2 or int(fields["num-slaves"]) < replicas:
                        return False
            return True

        wait_until("the sentinels finding each other and the replica", sentinels_see_each_other, BOOT_SECONDS)
    except Exception:
        topology.stop()
        raise
    return topology


def _replica_synced(node: Node) -> bool:
    with node.client() as c:
        info = c.info("replication")
        return info.get("master_link_status") == "up"


def current_primary_port(topology: Topology) -> int | None:
    """The port the sentinels now name as the primary, if one of them answers."""
    for node in topology.sentinels:
        try:
            with node.client() as c:
                host_port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", topology.service)
                return int(host_port[1])
        except redis.exceptions.RedisError:
            continue
    return None


def start_server(binary: str, *extra: str) -> Topology:
    """One redis-server that can be killed and started again on the same port (``extra``:
    more options, e.g. ``--appendonly yes --appendfsync always`` for a restart that keeps data)."""
    password = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="authgw-redis-"))
    (port,) = free_ports(1)
    args = server_args(binary, port, root, password, *extra)
    node = Node(port, args, root, password)
    topology = Topology(
        url=f"redis://:{password}@127.0.0.1:{port}/0", password=password, nodes=[node], workdir=root
    )
    try:
        node.start()
        node.wait_up()
    except Exception:
        topology.stop()
        raise
    return topology


@dataclass
class Gateway:
    """``authgw serve`` in a child process (gunicorn master and its workers)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def children(self) -> list[int]:
        """The master's children (Linux ``/proc``): its workers and its deliverer."""
        pid = self.process.pid
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children but the deliverer."""
        return [pid for pid in self.children() if pid not in self.deliverer_pids()]

    def deliverer_pids(self) -> list[int]:
        """The webhook deliverer ``authgw serve`` runs beside its workers (``authgw deliver``)."""
        found = []
        for pid in self.children():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"deliver" in argv:
                found.append(pid)
        return found

    def stop(self) -> int:
        terminate(self.process, 20)
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL the master, its workers and its deliverer at once: nothing gets to finish."""
        everyone = [*self.children(), self.process.pid]
        for pid in everyone:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(5)


def start_gateway(
    env: dict[str, str], workers: int = 1, threads: int = 4, extra: Sequence[str] = ()
) -> Gateway:
    """``authgw serve`` (with ``extra`` arguments) on a free loopback port, answering ``/healthz``."""
    import sys
    import urllib.request

    (port,) = free_ports(1)
    log = Path(tempfile.mkstemp(prefix="authgw-serve-", suffix=".log")[1])
    full_env = {**os.environ, **env}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "authgw.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                *extra,
            ],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", process, log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"authgw serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(gateway.url + "/healthz", timeout=1) as rv:
                return bool(rv.status == 200)
        except OSError:
            return False

    try:
        wait_until("authgw serve answering /healthz", healthy, BOOT_SECONDS)
        wait_until("the workers started", lambda: len(gateway.worker_pids()) >= workers, BOOT_SECONDS)
    except Exception:
        gateway.stop()
        raise
    return gateway


def start_deliverer(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """``authgw deliver`` alone, in a child process; returns it and its log file."""
    import sys

    log = Path(tempfile.mkstemp(prefix="authgw-deliver-", suffix=".log")[1])
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "authgw", "deliver"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log
