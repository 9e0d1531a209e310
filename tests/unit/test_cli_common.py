"""The CLI's plumbing: settings from stack.env only where the environment is silent, strict parsing
that never quotes a value, amounts from minor units through Decimal, who the operator is."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli_common import CliError, amount, database_where, load_stack_env, money, read_env_file, state_dir
from shared.audit import OperatorUnknown, operator_identity

pytestmark = pytest.mark.unit


def test_stack_env_fills_in_only_what_the_environment_does_not_set(tmp_path: Path) -> None:
    (tmp_path / "stack.env").write_text(
        "# written by deploy/local/stack.py\n"
        "\n"
        "DATABASE_URL=postgresql://clustergrants@127.0.0.1:59432/clustergrants\n"
        "KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:43092'\n"
        'INTAKE_URL="http://127.0.0.1:43080"\n'
        "export TOPIC_PREFIX=dev.\n"
    )
    env = {"CLUSTERGRANTS_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "broker.agency.example:9093"}
    assert load_stack_env(env) == tmp_path / "stack.env"
    assert env["DATABASE_URL"] == "postgresql://clustergrants@127.0.0.1:59432/clustergrants"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "broker.agency.example:9093"  # set: the environment wins
    assert env["INTAKE_URL"] == "http://127.0.0.1:43080"
    assert env["TOPIC_PREFIX"] == "dev."
    assert load_stack_env({"CLUSTERGRANTS_STATE_DIR": str(tmp_path / "none")}) is None  # no file: nothing read


def test_a_malformed_stack_env_names_the_line_but_never_its_content(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    path.write_text("DATABASE_URL=postgresql://u:hunter2@db/x\nKAFKA_SASL_PASSWORD hunter2\n")
    with pytest.raises(CliError) as refused:
        read_env_file(path)
    assert refused.value.message == f"{path}:2: expected KEY=VALUE"
    assert "hunter2" not in refused.value.message
    path.write_text("1BAD=x\n")
    with pytest.raises(CliError, match=":1: expected KEY=VALUE"):
        read_env_file(path)


def test_the_default_state_dir_is_the_repositorys_local_folder() -> None:
    assert state_dir({}) == Path(__file__).resolve().parents[2] / ".local"
    assert state_dir({"CLUSTERGRANTS_STATE_DIR": "/srv/cg"}) == Path("/srv/cg")


def test_amounts_come_from_minor_units_exactly() -> None:
    assert amount(123_456_789, "EUR") == "1,234,567.89"
    assert amount(5, "SEK") == "0.05"
    assert amount(0, "NOK") == "0.00"
    assert amount(35, "count") == "35"
    assert amount(None, "EUR") == "-"
    assert money(90_000_000_01, "EUR") == "EUR 90,000,000.01"
    assert money(2**62 + 1, "EUR") == "EUR 46,116,860,184,273,879.05"  # a float would have lost the cents


def test_the_database_is_named_without_its_password() -> None:
    assert (
        database_where("postgresql://user:hunter2@db.agency.example:6432/clustergrants") == "db.agency.example:6432/clustergrants"
    )
    assert "hunter2" not in database_where("postgresql://user:hunter2@db/x")


def test_the_operator_is_named_by_the_environment_or_the_os_user() -> None:
    assert operator_identity({"CLUSTERGRANTS_OPERATOR": "a.peeters"}) == "a.peeters"
    assert operator_identity({}) != ""  # the OS user running the tests
    with pytest.raises(OperatorUnknown, match="printable"):
        operator_identity({"CLUSTERGRANTS_OPERATOR": "a\nb"})
