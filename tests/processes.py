"""Run the services as separate OS processes for e2e tests; stop them by process id.

`replicas=N` runs N processes of every service, as instances `<service>-1` ... `<service>-N` (one
consumer group per service, so they share its partitions and compete for its relay's leadership);
with one replica an instance is named as its service. Each instance has its own log, ops port and (for
intake) HTTP port.

Each service authenticates to Kafka as its own principal (shared/acl.py), with the password from
the stack's credentials file (deploy/local/kafka_users.py), unless `env` names one explicitly.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from deploy.local.kafka_users import principal_env
from shared.topics import SERVICES as SERVICES  # re-exported for the harnesses

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instance_names(replicas: int = 1) -> dict[str, str]:
    """Instance name -> service name, for `replicas` processes of every service."""
    if replicas == 1:
        return {name: name for name in SERVICES}
    return {f"{name}-{i}": name for name in SERVICES for i in range(1, replicas + 1)}


class ServiceProcesses:
    def __init__(self, env: dict[str, str], log_dir: Path, replicas: int = 1) -> None:
        # A recipient-reference key of this run's own (notify refuses to start without one).
        ref_key = {"NOTIFY_RECIPIENT_REF_KEY": secrets.token_hex(32)}
        self.env = {**ref_key, **os.environ, **env, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        self._own_kafka_credentials = {k: v for k, v in env.items() if k.startswith(("KAFKA_SASL_", "KAFKA_SECURITY_"))}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.instances = instance_names(replicas)
        self.ops_ports = {name: free_port() for name in self.instances}
        # The first intake keeps the environment's HTTP port; other replicas get one of their own.
        first_intake = next(name for name, service in self.instances.items() if service == "intake")
        self.http_ports = {
            name: (self.env.get("INTAKE_HTTP_PORT") if name == first_intake else None) or str(free_port())
            for name, service in self.instances.items()
            if service == "intake"
        }

    def service_of(self, name: str) -> str:
        return self.instances[name]

    def replicas_of(self, service: str) -> list[str]:
        return [name for name, of in self.instances.items() if of == service]

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str) -> None:
        service = self.instances[name]
        log = self.log(name).open("ab")
        kafka = principal_env(service) | self._own_kafka_credentials
        env = {**self.env, **kafka, "OPS_HTTP_PORT": str(self.ops_ports[name])}
        if name in self.http_ports:
            env["INTAKE_HTTP_PORT"] = self.http_ports[name]
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def start_all(self) -> None:
        for name in self.instances:
            self.start(name)

    def wait_started(self, timeout: float = 60) -> None:
        """Every service logged 'service started' (its consumer group joined, relay running)."""
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name).read_text()[-3000:]}")
                if '"service started"' in self.log(name).read_text(errors="replace"):
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not started after {timeout:.0f} s: {sorted(pending)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(self.log(n).read_text(errors="replace") for n in self.instances if self.log(n).exists())
