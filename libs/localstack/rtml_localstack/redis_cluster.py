"""A local Redis Cluster from Debian's ``redis-server``: 3 masters, each with a replica.

Why replicas: a test of the online store on a cluster must be able to move a
master's slots to another node mid-load (a failover), which needs a replica in
sync. Each node is a :class:`~rtml_localstack.testing.RedisServer` of its own
(``--cluster-enabled yes``, no persistence, bound to 127.0.0.1 on a free
port), so nodes die with the test process like every local server; the
cluster is formed with ``redis-cli --cluster create ... --cluster-replicas 1``.
Forming one takes ~1-2 s.

Clients reach it with :attr:`LocalRedisCluster.url`, the ``redis+cluster://``
form every service reads from ``RTML_REDIS_URL``
(:mod:`rtml_features.online_store.redis.connection`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtml_localstack.errors import StackError
from rtml_localstack.launchers.redis import RedisLauncher
from rtml_localstack.ports import free_port, free_ports
from rtml_localstack.testing import RedisServer

if TYPE_CHECKING:
    import redis

#: How long a master may be unreachable before its replica is elected (ms); also how
#: long a killed master's slots stay unserved.
NODE_TIMEOUT_MS = 2000


class ClusterNodeLauncher(RedisLauncher):
    """redis-server as a cluster node (its ``nodes.conf`` in its own directory).

    The cluster bus port is a free port of its own (Redis's default, the client
    port + 10,000, does not exist above 55,535, where free ports often are).
    """

    def __init__(self, port: int | None = None, bus_port: int | None = None) -> None:
        super().__init__(port=port)
        self.bus_port = bus_port if bus_port is not None else free_port()

    def command(self, state_dir: Path) -> list[str]:
        return [
            *super().command(state_dir),
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", str(self.workdir(state_dir) / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # while a master's slots are unserved (it died, its replica not yet
            # elected) only those slots answer CLUSTERDOWN; the others keep serving
            "--cluster-require-full-coverage", "no",
            # a replica's first sync starts at once (Redis waits 5 s for more replicas)
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip


class LocalRedisCluster:
    """``masters`` masters and ``replicas`` replicas each, on free 127.0.0.1 ports."""

    def __init__(self, nodes: list[RedisServer], replicas: int) -> None:
        self.nodes = nodes
        self.replicas = replicas

    @classmethod
    def start_new(cls, state_dir: Path, masters: int = 3, replicas: int = 1,
                  timeout_s: float = 30.0) -> LocalRedisCluster:
        """Start the nodes, form the cluster, wait until every slot is served."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError("redis-cli is not installed (it comes with redis-server: "
                             "scripts/install-system-deps.sh)")
        nodes: list[RedisServer] = []
        cluster = cls(nodes, replicas)
        try:
            count = masters * (1 + replicas)
            ports = free_ports(2 * count)
            for i in range(count):
                node = RedisServer(ClusterNodeLauncher(ports[2 * i], ports[2 * i + 1]),
                                   state_dir / f"node-{i}")
                nodes.append(node)
                node.start()
            addresses = [f"{node.host}:{node.port}" for node in nodes]
            done = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                 "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout_s, check=False)
            if done.returncode != 0:
                raise StackError(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]}"
                                 f"\n{done.stderr[-2000:]}")
            cluster.wait_ready(timeout_s)
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a start-up node."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def node_client(self, node: RedisServer, **kwargs: Any) -> redis.Redis:
        """A plain client of one node (CLUSTER commands, INFO); the caller closes it."""
        import redis

        return redis.Redis(host=node.host, port=node.port, socket_timeout=5, **kwargs)

    def info(self, node: RedisServer, section: str) -> dict[str, Any]:
        client = self.node_client(node)
        try:
            return dict(client.info(section))
        finally:
            client.close()

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave`` (Redis's word)."""
        return str(self.info(node, "replication")["role"])

    def masters(self) -> list[RedisServer]:
        return [node for node in self.nodes if self.role(node) == "master"]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        out = []
        for node in self.nodes:
            info = self.info(node, "replication")
            if info["role"] == "slave" and int(info["master_port"]) == master.port:
                out.append(node)
        return out

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok`` and every replica's link is up."""
        deadline = time.monotonic() + timeout_s
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            problem = self._problem()
            if problem is None:
                return
            time.sleep(0.05)
        raise StackError(f"the Redis Cluster did not become ready in {timeout_s:.0f} s: "
                         f"{problem}")

    def _problem(self) -> str | None:
        import redis

        try:
            views = {self._view(node) for node in self.nodes}
            if len(views) != 1:  # gossip not converged: e.g. a master that does not know its
                return "the nodes disagree on the topology"  # replica ignores its failover
            [view] = views
            if len(view) != len(self.nodes) or any(flags for _, _, flags in view):
                return f"topology not settled: {sorted(view)}"
            for node in self.nodes:
                client = self.node_client(node)
                try:
                    state = client.execute_command("CLUSTER", "INFO")
                    text = state.decode() if isinstance(state, bytes) else str(state)
                    if "cluster_state:ok" not in text:
                        return f"{node.port}: cluster_state not ok"
                    replication = client.info("replication")
                    if replication["role"] == "slave" and \
                            replication.get("master_link_status") != "up":
                        return f"{node.port}: replica link down"
                    if replication["role"] == "master" and self.replicas and \
                            int(replication.get("connected_slaves", 0)) < self.replicas:
                        return f"{node.port}: waiting for its replicas"
                finally:
                    client.close()
        except redis.RedisError as error:
            return repr(error)
        return None

    def _view(self, node: RedisServer) -> frozenset[tuple[str, str, str]]:
        """What ``node`` believes: (node id, its master's id or ``-``, odd flags) per node."""
        client = self.node_client(node)
        try:
            raw = client.execute_command("CLUSTER", "NODES")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        out = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            odd = sorted(set(fields[2].split(",")) & {"fail", "fail?", "handshake", "noaddr"})
            out.append((fields[0], fields[3], ",".join(odd)))
        return frozenset(out)

    def failover(self, master: RedisServer, timeout_s: float = 15.0) -> RedisServer:
        """``CLUSTER FAILOVER`` on a replica of ``master``: it takes the master's slots
        (coordinated: the master stops writes, the replica catches up, then switches).
        Returns the new master once every node agrees and links are up again."""
        replica = self.replicas_of(master)[0]
        client = self.node_client(replica)
        try:
            client.execute_command("CLUSTER", "FAILOVER")
        finally:
            client.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.role(replica) == "master" and self.role(master) == "slave":
                self.wait_ready(max(0.1, deadline - time.monotonic()))
                return replica
            time.sleep(0.02)
        raise StackError(f"failover of {master.port} to {replica.port} did not complete in "
                         f"{timeout_s:.0f} s")

    def kill_master(self, master: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """SIGKILL ``master``; return its replica once the cluster elected it and every
        live node serves every slot again (``cluster-node-timeout`` + an election: ~3 s).
        The killed node stays down until :meth:`restart`."""
        replica = self.replicas_of(master)[0]
        master.kill()
        deadline = time.monotonic() + timeout_s
        live = [node for node in self.nodes if node is not master]
        while time.monotonic() < deadline:
            try:
                if self.role(replica) == "master" and all(
                        "cluster_state:ok" in self._cluster_info(node) for node in live):
                    return replica
            except Exception:  # a node busy electing: ask again
                pass
            time.sleep(0.02)
        raise StackError(f"no replica took over from killed master {master.port} in "
                         f"{timeout_s:.0f} s")

    def restart(self, node: RedisServer, timeout_s: float = 30.0) -> None:
        """Start a killed node again (its nodes.conf kept: it rejoins, as a replica of the
        master that took its slots) and wait until the whole cluster is ready."""
        node.start()
        self.wait_ready(timeout_s)

    def _cluster_info(self, node: RedisServer) -> str:
        client = self.node_client(node)
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def close(self) -> None:
        """Stop every node (fixture teardown)."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LocalRedisCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
