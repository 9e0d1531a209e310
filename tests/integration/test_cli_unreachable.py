"""Every `clustergrants` command against a PostgreSQL, a Kafka and an intake that do not answer
(closed loopback ports, found through stack.env as an operator's would be): one line on stderr,
exit code 2, nothing on stdout, no traceback, no password. The list of commands is checked against
the CLI's own command tree, so a new command cannot skip this test."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import typer

from services.cli import app
from tests.cli_tools import clean_env, cli, write_stack_env
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.integration

SAMPLE = str(ROOT / "deploy" / "local" / "samples" / "ttc-voucher.json")
PROPOSED = str(ROOT / "deploy" / "local" / "operator-parameters.yaml")
NOTIFICATION = "7c1d3b5e-2f7a-4d1e-9a57-0c7c2b1d5e10"
PASSWORD = "not-to-be-shown-4711"

#: Each leaf command of the CLI, with the arguments that make it reach for the infrastructure.
RUNS: dict[str, list[list[str]]] = {
    "submit": [["submit", SAMPLE], ["submit", "--kafka", SAMPLE]],
    "history": [["history", "VLAIO-2020-0042"], ["history", "X", "--json"]],
    "audit": [["audit"], ["audit", "--json"]],
    "migrate": [["migrate"], ["migrate", "--status"], ["migrate", "budget", "--json"]],
    "dead-letters list": [["dead-letters", "list"], ["dead-letters", "list", "--json"]],
    "dead-letters redrive": [["dead-letters", "redrive", "0:1", "--yes"], ["dead-letters", "redrive", "0:1", "--dry-run"]],
    "calls close-call": [
        ["calls", "close-call", "s3.platform", "s3-2018", "--yes"],
        ["calls", "close-call", "s3.platform", "s3-2018", "--dry-run", "--json"],
    ],
    "calls what-if": [["calls", "what-if", "--proposed-operator-file", PROPOSED]],
    "calls re-decide": [["calls", "re-decide", "--pending", "--yes"], ["calls", "re-decide", "--pending", "--dry-run"]],
    "calls record-selection": [
        [
            "calls",
            "record-selection",
            "s3.platform",
            "SE-ON-5560912148",
            "--reason",
            "r",
            "--document",
            "d",
            "--officer",
            "k-1",
            "--yes",
        ]
    ],
    "calls open-call": [["calls", "open-call", "nic.cluster", "--level", "arena", "--year", "2027", "--yes"]],
    "calls evaluate": [
        [
            "calls",
            "evaluate",
            "A-1",
            "--year",
            "2025",
            "--in-line-with-strategy",
            "--meets-requirements",
            "--reason",
            "r",
            "--officer",
            "k-1",
            "--yes",
        ],
    ],
    "review list": [["review", "list"], ["review", "list", "--json"]],
    "review record": [
        ["review", "record", "A-1", "applicant_sme", "passed", "--reason", "r", "--document", "d", "--officer", "k-1", "--yes"]
    ],
    "review history": [["review", "history", "A-1"], ["review", "history", "A-1", "--json"]],
    "budget balances": [["budget", "balances"], ["budget", "balances", "--json"]],
    "budget reconcile": [["budget", "reconcile"]],
    "budget beneficiaries": [
        ["budget", "beneficiaries"],
        ["budget", "beneficiaries", "--beneficiary", "BE-BCE_KBO-0700000001", "--json"],
    ],
    "budget open-year": [["budget", "open-year", "s3", "2018", "--yes"], ["budget", "open-year", "s3", "2018", "--dry-run"]],
    "budget release": [
        ["budget", "release", "A-1", "--withdraw", "--yes"],
        ["budget", "release", "A-1", "--reduce", "2022=1", "--dry-run"],
    ],
    "notify dead-letters list": [["notify", "dead-letters", "list"]],
    "notify dead-letters redeliver": [
        ["notify", "dead-letters", "redeliver", NOTIFICATION, "--yes"],
        ["notify", "dead-letters", "redeliver", NOTIFICATION, "--dry-run"],
    ],
    "export 360giving": [["export", "360giving", "--output", "-"]],
    "export eu-operations": [["export", "eu-operations", "--output", "-"]],
}


def leaf_commands(command: object, path: tuple[str, ...] = ()) -> set[str]:
    children = getattr(command, "commands", None)
    if not children:
        return {" ".join(path)}
    return {leaf for name, child in children.items() for leaf in leaf_commands(child, (*path, name))}


def test_the_list_covers_every_command_of_the_cli() -> None:
    assert leaf_commands(typer.main.get_command(app)) == set(RUNS)


def test_every_command_says_in_one_line_that_it_cannot_reach_the_infrastructure(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_stack_env(
        state,
        DATABASE_URL=f"postgresql://clustergrants:{PASSWORD}@127.0.0.1:{free_port()}/clustergrants",
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        INTAKE_URL=f"http://127.0.0.1:{free_port()}",
        OPENDATA_FILE=str(ROOT / "deploy" / "local" / "opendata.yaml"),
    )
    env = clean_env(state, CLUSTERGRANTS_OPERATOR="unreachable-test")
    runs = [args for variants in RUNS.values() for args in variants]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results: list[subprocess.CompletedProcess[str]] = list(pool.map(lambda args: cli(env, *args, timeout=90), runs))
    for args, result in zip(runs, results, strict=True):
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (args, result.returncode, result.stdout, result.stderr)
        assert len(lines) == 1, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)
        assert lines[0].startswith("error: cannot reach "), (args, lines[0])
        assert any(what in lines[0] for what in ("PostgreSQL at 127.0.0.1:", "Kafka at 127.0.0.1:", "the intake at http://")), (
            lines[0]
        )
        assert PASSWORD not in result.stderr and "Traceback" not in result.stderr
