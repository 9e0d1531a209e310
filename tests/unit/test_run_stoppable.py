"""SIGTERM to a bench, soak or chaos run (what stack.py sends its command) runs the harness's `finally`
blocks, which stop the processes it started; before, the services of a stopped soak kept running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from bench.harness import run_stoppable

async def main() -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    Path({pidfile!r}).write_text(str(child.pid))
    try:
        await asyncio.sleep(60)
    finally:
        child.terminate()
        await child.wait()
        Path({done!r}).write_text("stopped")

run_stoppable(main())
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_cancels_the_run_and_its_finally_blocks_stop_the_children(tmp_path: Path) -> None:
    pidfile, done = tmp_path / "child.pid", tmp_path / "done"
    script = SCRIPT.format(root=str(ROOT), pidfile=str(pidfile), done=str(done))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pidfile.exists(), "the run did not start its child"
        child = int(pidfile.read_text())
        assert _alive(child)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert done.read_text() == "stopped"
        assert not _alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
