"""shared.logging: no local variables in any traceback, no secret in any line, in both formats.

Each case runs in a fresh interpreter (logging is process-wide), as a service would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from shared.logging import secret_forms
from tests.processes import ROOT

pytestmark = pytest.mark.unit

PROGRAM = textwrap.dedent(
    """
    import logging, structlog
    from shared.logging import configure_logging
    configure_logging("test", {fmt!r}, secrets=["tok-aaaa-1111,tok-bbbb-2222"])
    log = structlog.get_logger("t")

    def connect():
        applicant_email = "private.person@example.org"      # a local variable, never to be printed
        dsn = "postgresql://app:S3cr%40t-Pw@db:5432/cg"
        raise ConnectionError("could not reach " + dsn.split("@")[1])

    try:
        connect()
    except ConnectionError:
        log.exception("connect failed", hint="tok-bbbb-2222")
    logging.getLogger("somelib").error("library line with %s", "postgresql://app:S3cr%40t-Pw@db:5432/cg")
    log.info("an object", value=ValueError("tok-aaaa-1111 in a repr"))
    connect()  # uncaught
    """
)


def python(program: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`program` in a fresh interpreter (logging is process-wide), with the repository importable."""
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run(fmt: str) -> str:
    done = python(PROGRAM.format(fmt=fmt), DATABASE_URL="postgresql://app:S3cr%40t-Pw@db:5432/cg")
    assert done.returncode == 1, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_show_no_local_variables_and_lines_no_secrets(fmt: str) -> None:
    out = run(fmt)
    assert "connect failed" in out and "Traceback" in out and "could not reach" in out
    assert "private.person" not in out, "a local variable was printed"
    for secret in ("S3cr%40t-Pw", "S3cr@t-Pw", "tok-aaaa-1111", "tok-bbbb-2222"):
        assert secret not in out, f"{secret} printed"
    assert out.count("[redacted]") >= 3
    assert "uncaught exception" in out


def test_json_lines_stay_json_uncaught_exceptions_included() -> None:
    lines = [json.loads(line) for line in run("json").splitlines() if line.strip()]
    assert [line["event"] for line in lines][-1] == "uncaught exception; exiting"
    assert "exception" in lines[-1] and lines[-1]["level"] == "critical"


def test_secret_forms_cover_a_dsn_password_and_each_token() -> None:
    forms = secret_forms("postgresql://u:p%40ss-word@h/db")
    assert {"p%40ss-word", "p@ss-word"} <= forms
    assert {"aaaa-token", "bbbb-token"} <= secret_forms("aaaa-token,bbbb-token")
    assert "quoted-pw" in secret_forms("host=db password='quoted-pw' user=x")
    assert not secret_forms("abc"), "too short to scrub without blanking ordinary words"


LEVELS = textwrap.dedent(
    """
    import logging, structlog
    from shared.logging import configure_logging
    configure_logging("test", "json", {level!r})
    structlog.get_logger("t").debug("our debug line")
    structlog.get_logger("t").warning("our warning line")
    logging.getLogger("somelib").debug("library debug line")
    logging.getLogger("somelib").warning("library warning line")
    """
)


@pytest.mark.parametrize("level", ["INFO", "debug"])
def test_our_lines_and_the_libraries_keep_the_configured_level_and_the_same_json(level: str) -> None:
    done = python(LEVELS.format(level=level))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    expected = ["our warning line", "library warning line"]
    if level == "debug":
        expected = ["our debug line", "our warning line", "library debug line", "library warning line"]
    assert [line["event"] for line in lines] == expected
    assert all(line["service"] == "test" and {"level", "timestamp"} <= line.keys() for line in lines)


def test_an_unknown_log_level_is_refused_by_name() -> None:
    from shared.logging import configure_logging

    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("test", "json", "loud")


BROKEN = textwrap.dedent(
    """
    import sys, structlog
    from shared.logging import configure_logging
    configure_logging("test", "json")
    class Broken:
        def write(self, text):
            raise BrokenPipeError("the log collector went away")
        def flush(self):
            pass
    sys.stderr = Broken()
    structlog.get_logger("t").warning("nobody reads this")
    sys.stderr = None
    structlog.get_logger("t").error("nor this")
    print("still running")
    """
)


def test_a_line_that_cannot_be_written_is_dropped_without_failing_the_caller() -> None:
    done = python(BROKEN)
    assert done.returncode == 0 and done.stdout.strip() == "still running", done.stderr[-2000:]
