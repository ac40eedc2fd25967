"""The deploy/ examples against what the server really accepts: every flag they pass exists,
the config file they ship starts a real server, the probes and the drain fit together, and the
compose example's agent runs against a real gateway on a unix socket.

Run: CELLGATE_BINARY=build/server/cellgate /usr/bin/python3 -m pytest tests/deploy -q"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BINARY = Path(os.environ.get("CELLGATE_BINARY") or REPO / "build" / "server" / "cellgate")
HEALTH = BINARY.parent / "cellgate-health"
DEADLINE_S = 30.0


def server_settings() -> Set[str]:
    """ServerConfig's fields: the flags' names with underscores."""
    proto = (REPO / "proto" / "cellgate" / "v1" / "server_config.proto").read_text()
    return set(re.findall(r"optional \w+ (\w+) = \d+;", proto))


def manifests() -> Dict[str, Dict[str, Any]]:
    docs: Dict[str, Dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def flags_in(args: List[str]) -> List[str]:
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--")]


def test_the_yaml_is_clean() -> None:
    result = subprocess.run(["yamllint", "--strict", "-c", str(DEPLOY / ".yamllint"),
                             str(DEPLOY)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_flag_the_examples_pass_exists() -> None:
    known = server_settings() | {"config"}
    used: Dict[str, List[str]] = {}
    sts = manifests()["StatefulSet/cellgate"]
    used["statefulset"] = flags_in(sts["spec"]["template"]["spec"]["containers"][0]["args"])
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    used["compose"] = flags_in(compose["services"]["cellgate"]["command"])
    dockerfile = (REPO / "Dockerfile").read_text()
    entry = re.findall(r'"--([a-z-]+)[="]', dockerfile)
    used["Dockerfile"] = [f.replace("-", "_") for f in entry
                          if f not in ("target",)]  # cellgate-health's own flag
    for where, flags in used.items():
        assert flags, where
        unknown = sorted(set(flags) - known)
        assert not unknown, f"{where} passes flags cellgate does not have: {unknown}"


def test_probes_and_the_drain_fit_together() -> None:
    docs = manifests()
    sts = docs["StatefulSet/cellgate"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = json.loads(docs["ConfigMap/cellgate-config"]["data"]["config.json"])
    grpc_port = int(config["listen"].rsplit(":", 1)[1])
    assert {p["containerPort"] for p in container["ports"]} >= {grpc_port, 9464}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # SIGTERM drains for drain_seconds, then shuts kernels down: the grace period covers both.
    assert pod["terminationGracePeriodSeconds"] >= config["drain_seconds"] + 10
    assert f"Service/{sts['spec']['serviceName']}" in docs and "Service/cellgate" in docs
    assert docs[f"Service/{sts['spec']['serviceName']}"]["spec"]["clusterIP"] == "None"
    # Routing by id needs the replica name as the prefix.
    assert "--kernel-id-prefix=$(POD_NAME)" in container["args"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {config["state_dir"], config["runtime_dir"], "/tmp"} <= mounts
    assert os.path.dirname(config["auth_token_file"]) in mounts
    selector = docs["PodDisruptionBudget/cellgate"]["spec"]["selector"]["matchLabels"]
    assert selector == sts["spec"]["selector"]["matchLabels"]


class Gateway:
    """The real server with `args`, a port file, and its own directories."""

    def __init__(self, *args: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cgdep-"))
        os.chmod(self.dir, 0o711)
        self.port_file = self.dir / "port"
        self.log = self.dir / "log"
        uid_base = 650000 + (os.getpid() % 1000) * 16
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BINARY), *args, f"--port-file={self.port_file}",
                 f"--runtime-dir={self.dir / 'r'}", f"--kernel-uid-base={uid_base}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE_S
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"cellgate did not start:\n{self.log.read_text()}")
            time.sleep(0.02)  # polling for the port file, with a deadline

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def test_the_shipped_config_file_starts_a_server(tmp_path: Path) -> None:
    config = json.loads(manifests()["ConfigMap/cellgate-config"]["data"]["config.json"])
    # What the pod mounts, moved to this machine's paths; everything else as shipped.
    (tmp_path / "token").write_text("a-token\n")
    config.update(listen="127.0.0.1:0", metrics_listen="127.0.0.1:0",
                  auth_token_file=str(tmp_path / "token"), state_dir=str(tmp_path / "state"),
                  runtime_dir="", pool_size=0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    gateway = Gateway(f"--config={tmp_path / 'config.json'}", "--kernel-id-prefix=cellgate-0")
    try:
        port = gateway.port_file.read_text().strip()
        probe = subprocess.run([str(HEALTH), f"--target=127.0.0.1:{port}"], capture_output=True,
                               text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert '"event":"serving"' in gateway.log.read_text()  # log_format json, from the file
    finally:
        assert gateway.stop() == 0


@pytest.fixture()
def socket_gateway() -> Iterator[Gateway]:
    sock_dir = Path(tempfile.mkdtemp(prefix="cgsock-"))
    gateway = Gateway(f"--listen=unix:{sock_dir}/cellgate.sock", "--unix-socket-mode=0660",
                      "--state-dir=", "--max-kernels=2")
    gateway.socket = sock_dir / "cellgate.sock"  # type: ignore[attr-defined]
    yield gateway
    assert gateway.stop() == 0
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_the_compose_agent_runs_against_a_gateway_on_a_unix_socket(
        socket_gateway: Gateway) -> None:
    target = f"unix:{socket_gateway.socket}"  # type: ignore[attr-defined]
    probe = subprocess.run([str(HEALTH), f"--target={target}"], capture_output=True, text=True,
                           timeout=30)
    assert probe.returncode == 0, probe.stderr
    agent = subprocess.run(
        ["/usr/bin/python3", str(DEPLOY / "compose" / "agent.py")], capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "CELLGATE_TARGET": target,
             "PYTHONPATH": str(REPO / "client" / "python")})
    assert agent.returncode == 0, agent.stderr
    assert re.search(r"mean\s+2\.0\s+6\.0", agent.stdout), agent.stdout
    assert re.search(r"max\s+4\.0\s+16\.0", agent.stdout), agent.stdout
