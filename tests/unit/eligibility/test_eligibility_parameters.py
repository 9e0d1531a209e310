"""The parameter loader: dated lookup, exact units, version strings, and the operator file's
validation errors that name the file, the key and the problem."""

from __future__ import annotations

import re
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from services.eligibility.parameters import (
    OPERATOR_FILE_ENV,
    UNDATED,
    DatedValue,
    OperatorParameterError,
    OperatorParameters,
    OperatorParameterUnset,
    Parameter,
    ParameterNotInForce,
    ParameterStore,
    SchemeParameterError,
    SchemeParameters,
)
from services.eligibility.schemes import OPERATOR_KEYS, SCHEMES
from shared.money import Money

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "services/eligibility/operator-parameters.example.yaml"
STORE = ParameterStore.load()


def scheme_yaml(values: dict[object, object], unit: str = "currency") -> dict[str, object]:
    return {
        "scheme": "vlaio.business-network",
        "time_zone": "Europe/Brussels",
        "currency": "EUR",
        "programme": "vlaio.clusters",
        "source": {
            "publisher": "VLAIO",
            "title": "Innovatieclusters",
            "date": "last changed 11 June 2020",
            "file": "../shared/seeds/000_x.txt",
            "language": "nl",
        },
        "parameters": {"ceiling": {"unit": unit, "reference": "000_x.txt", "values": values}},
    }


def found(parameter: Parameter, on: date) -> DatedValue:
    value = parameter.at(on)
    assert value is not None, f"nothing in force on {on}"
    return value


# --- dated lookup ----------------------------------------------------------------------------


def test_value_in_force_is_the_latest_not_after_the_day() -> None:
    params = SchemeParameters.from_mapping(
        scheme_yaml({date(2016, 1, 1): {"value": 100000}, date(2019, 1, 1): {"value": 150000}}), source="t.yaml"
    )
    ceiling = params.parameters["ceiling"]
    assert ceiling.at(date(2015, 12, 31)) is None
    assert found(ceiling, date(2016, 1, 1)).value == Money.of_major(100000, "EUR")
    assert found(ceiling, date(2018, 12, 31)).value == Money.of_major(100000, "EUR")
    assert found(ceiling, date(2019, 1, 1)).value == Money.of_major(150000, "EUR")


def test_undated_value_is_in_force_until_the_first_dated_one() -> None:
    params = SchemeParameters.from_mapping(
        scheme_yaml({"undated": {"value": True}, "2020-06-11": {"value": False}}, unit="bool"), source="t.yaml"
    )
    ceiling = params.parameters["ceiling"]
    assert found(ceiling, date(1990, 1, 1)).valid_from == UNDATED
    assert found(ceiling, date(2020, 6, 10)).value is True
    assert found(ceiling, date(2020, 6, 11)).value is False


def test_vlaio_closing_is_a_dated_parameter() -> None:
    before = STORE.in_force("vlaio.spearhead-cluster", date(2020, 6, 10))
    after = STORE.in_force("vlaio.spearhead-cluster", date(2020, 6, 11))
    assert before.flag("accepting_applications") is True
    assert after.flag("accepting_applications") is False
    assert after.dated("accepting_applications").valid_from == date(2020, 6, 11)


def test_parameter_not_in_force_before_its_first_date() -> None:
    params = SchemeParameters.from_mapping(scheme_yaml({date(2019, 1, 1): {"value": 1}}), source="t.yaml")
    store = STORE.with_scheme(params)
    with pytest.raises(ParameterNotInForce):
        store.in_force("vlaio.business-network", date(2018, 12, 31)).money("ceiling")
    assert store.in_force("vlaio.business-network", date(2019, 1, 1)).money("ceiling") == Money.of_major(1, "EUR")


def test_version_names_scheme_latest_date_and_content() -> None:
    before = STORE.in_force("vlaio.spearhead-cluster", date(2020, 6, 10)).version
    after = STORE.in_force("vlaio.spearhead-cluster", date(2020, 6, 11)).version
    assert before.startswith("vlaio.spearhead-cluster@undated#")
    assert after.startswith("vlaio.spearhead-cluster@2020-06-11#")
    assert before.split("#")[1] == after.split("#")[1]


def test_version_changes_with_the_operator_values_of_the_scheme_family_only() -> None:
    day = date(2019, 3, 1)
    nic = STORE.with_operator(OperatorParameters.from_mapping({"nic": {"selection_cap": 5}}))
    vlaio = STORE.with_operator(OperatorParameters.from_mapping({"vlaio": {"recognised_spearhead_clusters": ["0700.000.005"]}}))
    base = STORE.in_force("vlaio.spearhead-cluster", day).version
    assert nic.in_force("vlaio.spearhead-cluster", day).version == base
    assert vlaio.in_force("vlaio.spearhead-cluster", day).version != base


# --- exact units -----------------------------------------------------------------------------


def test_shipped_figures_are_exact() -> None:
    day = date(2019, 3, 1)
    assert STORE.in_force("vlaio.spearhead-cluster", day).ratio("coordination_share") == Fraction(1, 2)
    assert STORE.in_force("vlaio.spearhead-cluster", day).money("yearly_ceiling").amount_minor == 50_000_000
    assert STORE.in_force("vlaio.business-network", day).money("yearly_ceiling").amount_minor == 15_000_000
    assert STORE.in_force("vlaio.business-network", day).integer("max_years") == 3
    assert STORE.in_force("vlaio.spearhead-cluster", day).integer("max_years") == 10
    assert STORE.in_force("ttc.innovation-voucher", day).money("voucher_amount").amount_minor == 500_000
    assert STORE.in_force("ttc.innovation-voucher", day).integer("vouchers_total") == 35
    assert STORE.in_force("ttc.innovation-fund", day).money("erdf_contribution").amount_minor == 249_701_100
    assert STORE.in_force("ttc.innovation-fund", day).money("project_budget_total").amount_minor == 499_402_200
    assert STORE.in_force("s3.financing", day).money("max_amount") == Money(amount_minor=60_000_000, currency="SEK")
    assert STORE.in_force("s3.platform", day).day("expression_of_interest_deadline") == date(2018, 5, 31)


def test_every_shipped_parameter_names_its_seed_file() -> None:
    seeds = {
        "000_b8f1635a33d3043b.txt",
        "001_2aac08539ee69503.txt",
        "002_be53197c6b0f1ecb.txt",
        "003_2a022b9e52d62383.txt",
        "004_353bc3df9124071f.txt",
    }
    for scheme in ("vlaio.spearhead-cluster", "ttc.innovation-fund", "s3.financing", "nic.cluster"):
        for parameter in STORE.scheme(scheme).parameters.values():
            assert any(seed in parameter.reference for seed in seeds), (scheme, parameter.name)


@pytest.mark.parametrize(
    ("unit", "raw", "problem"),
    [
        ("currency", 500000.5, "float"),
        ("currency", "1.001", "more decimals"),
        ("currency", -1, "negative"),
        ("percent", 0.5, "float"),
        ("years", "ten", "whole number"),
        ("weeks", 1, "unknown unit"),
    ],
)
def test_scheme_file_errors_name_file_key_and_problem(unit: str, raw: object, problem: str) -> None:
    with pytest.raises(SchemeParameterError) as caught:
        SchemeParameters.from_mapping(scheme_yaml({"2019-01-01": {"value": raw}}, unit=unit), source="x/parameters.yaml")
    message = str(caught.value)
    assert message.startswith("x/parameters.yaml: parameters.ceiling")
    assert problem in message


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"source": None}, "source", "must name the document"),
        ({"source": {"publisher": "VLAIO"}}, "source.title", "non-empty text"),
        ({"file": "/srv/seeds/000_x.txt"}, "source.file", "relative to the repository"),
        ({"language": "da"}, "source.language", "unknown language"),
    ],
)
def test_scheme_file_must_cite_its_document(change: dict[str, object], key: str, problem: str) -> None:
    data = scheme_yaml({"2019-01-01": {"value": 1}})
    if "source" in change:
        data["source"] = change["source"]
    else:
        data["source"] = {**data["source"], **change}  # type: ignore[dict-item]  # YAML-shaped test data
    with pytest.raises(SchemeParameterError) as caught:
        SchemeParameters.from_mapping(data, source="x.yaml")
    assert (caught.value.key, problem in caught.value.problem) == (key, True)


def test_every_shipped_scheme_cites_its_seed_relative_to_the_repository() -> None:
    """The seeds sit beside the repository (`../shared/seeds/`); where they do, the cited file exists."""
    root = Path(__file__).resolve().parents[3]
    for scheme in SCHEMES:
        document = STORE.scheme(scheme).source
        assert re.fullmatch(r"\.\./shared/seeds/00[0-4]_[0-9a-f]{16}\.txt", document.file), (scheme, document.file)
        if (root / "../shared/seeds").is_dir():
            assert (root / document.file).is_file(), f"{scheme}: {document.file} does not exist"


def test_a_documentation_change_does_not_re_version_decisions() -> None:
    before = SchemeParameters.from_mapping(scheme_yaml({"2019-01-01": {"value": 1}}), source="a.yaml")
    changed = scheme_yaml({"2019-01-01": {"value": 1}})
    changed["parameters"]["ceiling"]["reference"] = "000_x.txt, a better quote"  # type: ignore[index]  # YAML-shaped test data
    changed["parameters"]["ceiling"]["description"] = "reworded"  # type: ignore[index]  # YAML-shaped test data
    assert SchemeParameters.from_mapping(changed, source="b.yaml").content_hash == before.content_hash
    dearer = scheme_yaml({"2019-01-01": {"value": 2}})
    assert SchemeParameters.from_mapping(dearer, source="c.yaml").content_hash != before.content_hash


def test_scheme_file_without_reference_is_refused() -> None:
    data = scheme_yaml({"2019-01-01": {"value": 1}})
    del data["parameters"]["ceiling"]["reference"]  # type: ignore[index]  # YAML-shaped test data
    with pytest.raises(SchemeParameterError, match=r"parameters\.ceiling\.reference: must name the source"):
        SchemeParameters.from_mapping(data, source="x.yaml")


# --- the operator file -----------------------------------------------------------------------


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_example_file_documents_every_key_and_sets_none() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    operator = OperatorParameters.load(EXAMPLE)
    assert operator.values == {}
    flat: set[str] = set()

    def walk(node: object, prefix: str) -> None:
        assert isinstance(node, dict)
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in OPERATOR_KEYS:
                assert value is None, dotted
                flat.add(dotted)
            else:
                walk(value, f"{dotted}.")

    walk(raw, "")
    assert flat == set(OPERATOR_KEYS)


def test_unset_key_is_unset_not_guessed() -> None:
    with pytest.raises(OperatorParameterUnset) as caught:
        OperatorParameters.load(EXAMPLE).get("nic.levels.gce.yearly_maximum_nok")
    assert caught.value.key == "nic.levels.gce.yearly_maximum_nok"


def test_valid_operator_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "vlaio": {
                "recognised_spearhead_clusters": ["0700.000.104", "BE-BCE_KBO-0700000005"],
                "hermes_yearly_maximum_eur": {2020: "1000000.50"},
            },
            "s3": {"platform_selection_cap": 25, "financing_application_deadline": "2018-10-31"},
            "nic": {"application_deadline": {2024: "2024-09-16"}, "levels": {"gce": {"yearly_maximum_nok": 10000000}}},
            "ttc": {"innovation_fund_matching_share_percent": "100"},
        },
    )
    store = ParameterStore.load(operator_file=path)
    op = store.operator
    assert op.get("vlaio.hermes_yearly_maximum_eur") == {2020: Money(amount_minor=100_000_050, currency="EUR")}
    assert op.get("nic.application_deadline") == {2024: date(2024, 9, 16)}
    assert op.get("nic.levels.gce.yearly_maximum_nok") == Money.of_major(10_000_000, "NOK")
    assert op.get("ttc.innovation_fund_matching_share_percent") == Fraction(1)
    assert op.get("s3.financing_application_deadline") == date(2018, 10, 31)
    assert op.get("vlaio.recognised_spearhead_clusters") == {"BE-BCE_KBO-0700000104", "BE-BCE_KBO-0700000005"}


def test_from_env_reads_the_operator_file_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"nic": {"selection_cap": 7}})
    store = ParameterStore.from_env({OPERATOR_FILE_ENV: str(path)})
    assert store.operator.get("nic.selection_cap") == 7
    assert ParameterStore.from_env({}).operator.values == {}


@pytest.mark.parametrize(
    ("content", "key", "problem"),
    [
        (
            {"nic": {"levels": {"arena": {"yearly_maximum_nok": 1500000.5}}}},
            "nic.levels.arena.yearly_maximum_nok",
            "float",
        ),
        (
            {"nic": {"levels": {"arena": {"yearly_maximum_nok": "1.005"}}}},
            "nic.levels.arena.yearly_maximum_nok",
            "decimals",
        ),
        ({"nic": {"levels": {"arena": {"max_years": 0}}}}, "nic.levels.arena.max_years", "at least 1"),
        ({"nic": {"levels": {"nce": {"max_years": 3}}}}, "nic.levels.nce.max_years", "unknown key"),
        ({"nic": {"application_deadline": {2024: "2024-10-01"}}}, "nic.application_deadline", "not in September"),
        ({"nic": {"application_deadline": {2024: "mid-September"}}}, "nic.application_deadline", "YYYY-MM-DD"),
        ({"vlaio": {"hermes_yearly_maximum_eur": {"next": 100}}}, "vlaio.hermes_yearly_maximum_eur", "whole year"),
        ({"vlaio": {"recognised_spearhead_clusters": "Flux50"}}, "vlaio.recognised_spearhead_clusters", "list"),
        (
            {"vlaio": {"recognised_spearhead_clusters": ["0700.000.104", "Flux50 vzw"]}},
            "vlaio.recognised_spearhead_clusters",
            "entry 2 ('Flux50 vzw') is not a valid register number",
        ),
        (
            {"vlaio": {"recognised_spearhead_clusters": ["0700.000.105"]}},
            "vlaio.recognised_spearhead_clusters",
            "check digit invalid",
        ),
        ({"vlaio": {"recognised_spearhead_cluster": ["typo"]}}, "vlaio.recognised_spearhead_cluster", "unknown key"),
        (
            {"ttc": {"innovation_fund_matching_share_percent": 0}},
            "ttc.innovation_fund_matching_share_percent",
            "more than 0",
        ),
        ({"s3": {"platform_selection_cap": 19}}, "s3.platform_selection_cap", "outside the range"),
        ({"s3": {"platform_selection_cap": 26}}, "s3.platform_selection_cap", "20-25"),
        ("vlaio: [unclosed", "(file)", "not valid YAML"),
        ("- a list", "(file)", "must be a mapping"),
    ],
)
def test_operator_file_errors_name_file_key_and_problem(tmp_path: Path, content: object, key: str, problem: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(OperatorParameterError) as caught:
        ParameterStore.load(operator_file=path)
    error = caught.value
    assert (error.file, error.key) == (str(path), key)
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize("cap", [20, 25])
def test_s3_cap_at_the_ends_of_the_range_is_accepted(tmp_path: Path, cap: int) -> None:
    store = ParameterStore.load(operator_file=write(tmp_path, {"s3": {"platform_selection_cap": cap}}))
    assert store.operator.get("s3.platform_selection_cap") == cap


def test_missing_operator_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(OperatorParameterError, match=r"nope\.yaml: \(file\): cannot be read"):
        ParameterStore.load(operator_file=missing)


def test_nic_deadline_is_per_year() -> None:
    op = OperatorParameters.from_mapping({"nic": {"application_deadline": {2024: "2024-09-16", 2025: "2025-09-15"}}})
    assert op.get("nic.application_deadline") == {2024: date(2024, 9, 16), 2025: date(2025, 9, 15)}
