"""Run `clustergrants` as the operator does: a separate process, settings from a stack.env that the
test writes (as the local stack does), stdin not a terminal unless `answer` is given (then a
pseudo-terminal, so the confirmation prompt is really asked and answered)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT

CONNECTION_VARIABLES = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "TOPIC_PREFIX",
    "INTAKE_URL",
    "INTAKE_TOKEN",
    "BUDGET_POTS_FILE",
    "ELIGIBILITY_OPERATOR_PARAMETERS_FILE",
    "OPENDATA_FILE",
)


def write_stack_env(state_dir: Path, **values: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "stack.env"
    path.write_text("# as deploy/local/stack.py writes it\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def clean_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without its connection settings: the CLI must find them in
    `state_dir`/stack.env."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    return {**env, "CLUSTERGRANTS_STATE_DIR": str(state_dir), "COLUMNS": "250", "LOG_FORMAT": "json", **extra}


def cli(env: dict[str, str], *args: str, answer: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.cli", *args]
    if answer is None:
        return subprocess.run(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
        )
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            os.close(terminal)
            terminal = -1
            os.write(controller, answer.encode())  # the terminal holds the line until the prompt reads it
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            return subprocess.CompletedProcess(command, proc.returncode, out, err)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one and no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, (result.args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]
