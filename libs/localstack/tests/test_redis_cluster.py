"""The local Redis Cluster: formed, every slot served, a failover moves slots, stopped after."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster

from rtml_localstack.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_three_masters_with_a_replica_each_serve_every_slot_and_fail_over(
        tmp_path: Path) -> None:
    cluster = LocalRedisCluster.start_new(tmp_path)
    try:
        assert cluster.url.startswith("redis+cluster://127.0.0.1:")
        assert len(cluster.url.split(",")) == 6
        masters = cluster.masters()
        assert len(masters) == 3
        assert all(len(cluster.replicas_of(master)) == 1 for master in masters)
        client = RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in masters])
        try:
            slots = client.cluster_slots()
            assert sum(end - start + 1 for start, end in slots) == 16_384
            for i in range(200):
                client.set(f"k{i}", i)
            moved = masters[0]
            promoted = cluster.failover(moved)
            assert cluster.role(promoted) == "master" and cluster.role(moved) == "slave"
            # the client follows the move; nothing written before was lost
            assert [int(client.get(f"k{i}")) for i in range(200)] == list(range(200))
        finally:
            client.close()
    finally:
        cluster.close()
    assert not any(_listening(node.port) for node in cluster.nodes)
