"""Run the services as separate OS processes for e2e tests; stop them by process id.

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

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("intake", "eligibility", "budget", "notify")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcesses:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        # A recipient-reference key of this run's own (notify refuses to start without one).
        ref_key = {"NOTIFY_RECIPIENT_REF_KEY": secrets.token_hex(32)}
        self.env = {**ref_key, **os.environ, **env, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        self._own_kafka_credentials = {k: v for k, v in env.items() if k.startswith(("KAFKA_SASL_", "KAFKA_SECURITY_"))}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ops_ports = {name: free_port() for name in SERVICES}

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str) -> None:
        log = self.log(name).open("ab")
        kafka = principal_env(name) | self._own_kafka_credentials
        env = {**self.env, **kafka, "OPS_HTTP_PORT": str(self.ops_ports[name])}
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def start_all(self) -> None:
        for name in SERVICES:
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
        return "\n".join(self.log(n).read_text(errors="replace") for n in SERVICES if self.log(n).exists())
