"""A local Spark keeps its listeners on the loopback interface and its web UI off unless asked for."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from issuerisk.conf import load_config
from issuerisk.lakehouse.spark_session import builder_for

BIND_KEYS = ("spark.driver.host", "spark.driver.bindAddress", "spark.ui.enabled")


def _options(tmp_path, monkeypatch, **env):
    """The builder's bind options for a config from ``env``, and the SPARK_LOCAL_IP it leaves for the JVM."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"})
    cfg = load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path / "wh"), **env})
    options = builder_for(cfg)._options
    return {k: options.get(k) for k in BIND_KEYS}, os.environ.get("SPARK_LOCAL_IP")


def test_a_local_master_binds_to_loopback_with_the_ui_off(tmp_path, monkeypatch):
    options, local_ip = _options(tmp_path, monkeypatch, ISSUERISK__SPARK__MASTER="local[2]")
    assert options == {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
    }
    assert local_ip == "127.0.0.1"  # the web UI's bind address (it has no spark.ui.* setting for it)


def test_spark_extra_wins_and_a_ui_asked_for_stays_on(tmp_path, monkeypatch):
    options, local_ip = _options(
        tmp_path,
        monkeypatch,
        ISSUERISK__SPARK__MASTER="local[*]",
        **{"ISSUERISK__SPARK__EXTRA__spark.ui.enabled": "true"},
    )
    assert options == {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "true",
    }
    assert local_ip == "127.0.0.1"
    options, local_ip = _options(
        tmp_path,
        monkeypatch,
        **{
            "ISSUERISK__SPARK__EXTRA__spark.driver.bindAddress": "0.0.0.0",
            "ISSUERISK__SPARK__EXTRA__spark.driver.host": "10.1.2.3",
        },
    )
    assert options == {
        "spark.driver.host": "10.1.2.3",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.ui.enabled": "false",
    }
    assert local_ip == "0.0.0.0"


def test_a_cluster_master_keeps_sparks_own_addresses(tmp_path, monkeypatch):
    options, local_ip = _options(tmp_path, monkeypatch, ISSUERISK__SPARK__MASTER="spark://head:7077")
    assert options == {"spark.driver.host": None, "spark.driver.bindAddress": None, "spark.ui.enabled": None}
    assert local_ip is None


def _listening(pid: int) -> list[str]:
    """Addresses (ip:port) of the TCP sockets process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            packed = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            found.append(f"{socket.inet_ntop(family, packed)}:{int(port, 16)}")
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


@pytest.mark.slow
def test_the_started_driver_listens_on_loopback_only(spark):
    conf = spark.sparkContext.getConf()
    assert [conf.get(k, None) for k in BIND_KEYS] == ["127.0.0.1", "127.0.0.1", "false"]
    assert spark.sparkContext.uiWebUrl is None
    spark.range(4).repartition(2).count()  # the block manager and RPC are up
    listening = _listening(spark.sparkContext._gateway.proc.pid)
    assert len(listening) >= 3, listening  # py4j gateway, driver RPC, block manager
    assert [a for a in listening if not _loopback(a)] == []
