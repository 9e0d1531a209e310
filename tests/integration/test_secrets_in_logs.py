"""No secret in any log line of a service, in either format, whether it runs or fails (issue 10, part 5).

The intake service runs with a password in DATABASE_URL (the local PostgreSQL trusts loopback, so
the password is accepted and ignored) and serves a few requests, one of them failing; then it is
started with DATABASE_URLs that fail (no server on the port, an unknown database, a malformed
port), so that errors and tracebacks are logged. Every line of every run is searched for the
password, its URL-encoded form and the bearer token. Console format runs too: `make run` writes
console format even into files, and it used to print every traceback frame's local variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from tests.processes import ROOT, ServiceProcesses, free_port

pytestmark = pytest.mark.integration

PASSWORD = "Pa55:w0rd/with@odd%chars"
TOKEN = "log-test-token-f00dfeed"


def with_password(url: str, password: str = PASSWORD, **replace: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "clustergrants"
    host = replace.pop("host", parts.hostname or "127.0.0.1")
    port = replace.pop("port", str(parts.port or 5432))
    path = replace.pop("path", parts.path)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}:{port}", path=path))


def leaks(text: str) -> list[str]:
    forms = {PASSWORD, quote(PASSWORD, safe=""), json.dumps(PASSWORD)[1:-1], TOKEN}
    return [form for form in forms if form in text]


async def started(processes: ServiceProcesses, timeout_s: float = 90) -> None:
    """The service logged 'http listening' (in either format): its HTTP socket is bound ('service
    started' comes before it, and a request right after that one could be refused)."""
    deadline = time.monotonic() + timeout_s
    while "http listening" not in processes.log("intake").read_text(errors="replace"):
        assert processes.procs["intake"].poll() is None, processes.log("intake").read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "intake did not start"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("log_format", ["console", "json"])
async def test_a_running_service_never_prints_its_database_password(
    log_format: str, database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    http_port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": with_password(database_url),
        "TOPIC_PREFIX": topic_prefix,
        "INTAKE_HTTP_PORT": str(http_port),
        "INTAKE_API_TOKENS": TOKEN,
        "LOG_LEVEL": "DEBUG",
        "OTEL_SDK_DISABLED": "true",
    }
    processes = ServiceProcesses(env, tmp_path)
    processes.env["LOG_FORMAT"] = log_format
    processes.start("intake")
    try:
        await started(processes)
        async with httpx.AsyncClient(timeout=20) as http:
            url = f"http://127.0.0.1:{http_port}"
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            assert (await http.post(f"{url}/v1/applications", content=b"{", headers=headers)).status_code == 422
            assert (
                await http.post(f"{url}/v1/applications", content=b"{}", headers={"Authorization": "Bearer x"})
            ).status_code == 401
            assert (await http.get(f"{url}/openapi.json")).status_code == 200
    finally:
        processes.stop_all()
    text = processes.log("intake").read_text(errors="replace")
    assert "service started" in text
    assert leaks(text) == [], f"{log_format}: a secret in the log"


@pytest.mark.parametrize("log_format", ["console", "json"])
@pytest.mark.parametrize(
    ("broken", "expect"),
    [
        ({"port": "1"}, "waiting for the infrastructure"),  # nothing listens: retried, then given up
        ({"path": "/no_such_database_here"}, "no_such_database_here"),  # refused at once
        ({"port": "notaport"}, "Traceback"),  # the DSN cannot be parsed
    ],
)
def test_a_failing_service_never_prints_its_database_password(
    log_format: str, broken: dict[str, str], expect: str, database_url: str, kafka_bootstrap: str
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": with_password(database_url, **broken),
        "INTAKE_HTTP_PORT": str(free_port()),
        "OPS_HTTP_PORT": str(free_port()),
        "INTAKE_API_TOKENS": TOKEN,
        "STARTUP_TIMEOUT_S": "2",
        "LOG_FORMAT": log_format,
        "OTEL_SDK_DISABLED": "true",
    }
    run = subprocess.run(
        [sys.executable, "-m", "services.intake"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    text = run.stdout + run.stderr
    assert run.returncode != 0, text[-2000:]
    assert expect in text, text[-3000:]
    assert "Traceback" in text, "the failure is logged with its traceback"
    assert leaks(text) == [], f"{log_format}: a secret in the log:\n{text[-3000:]}"
    if log_format == "json":
        assert all(json.loads(line) for line in text.splitlines() if line.strip()), "every line is JSON, the last one too"
