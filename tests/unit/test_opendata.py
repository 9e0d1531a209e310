"""Open-data exports (services/opendata/export.py), pure: the 360Giving JSON package validated against
the published 360Giving schemas (read from ../shared/standards/360giving, never copied), the CSV
columns derived from the schema's titles, exact amounts, the EU list of operations, no personal
data, and refusals naming the operator keys that are unset."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.opendata import export as opendata
from services.opendata.export import (
    EU_OPERATION_COLUMNS,
    THREESIXTYGIVING_COLUMNS,
    CommittedGrant,
    OpenDataConfig,
    OpenDataError,
)
from shared.events import Application
from tests.unit.budget.builders import grant

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STANDARD = ROOT.parent / "shared" / "standards" / "360giving"
SAMPLES = ROOT / "deploy" / "local" / "samples"
EXAMPLE_FILE = ROOT / "services" / "opendata" / "opendata.example.yaml"
DEMO_FILE = ROOT / "deploy" / "local" / "opendata.yaml"
TTC_SHARES = [("erdf", 2497011, 4994022), ("co-financing", 2497011, 4994022)]
COMMITTED = datetime(2019, 10, 2, 22, 30, tzinfo=UTC)  # 2019-10-03 00:30 in Brussels: the UTC date counts


# --- the published schemas ------------------------------------------------------------------------------


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    package = json.loads((STANDARD / "360-giving-package-schema.json").read_text(encoding="utf-8"))
    grant_schema = json.loads((STANDARD / "360-giving-schema.json").read_text(encoding="utf-8"))
    return package, grant_schema


# The 360Giving schemas tell dates from date-times with `oneOf: [{format: date-time}, {pattern: date}]`,
# so `date-time` must be asserted, as 360Giving's own validator does. jsonschema checks it only with
# an optional package this project does not install; these checkers apply RFC 3339 / RFC 3986 here.
FORMATS = FormatChecker()
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper())  # raises on 2019-02-30 and the like
    return True


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    return not isinstance(value, str) or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$", value))


def package_validator() -> Draft202012Validator:
    """The package schema, with the grant schema registered both under its own $id (1.4.3) and under
    the URL the package's `grants.items.$ref` names (1.4.2): nothing is fetched."""
    package, grant_schema = _schemas()
    # The published files declare "http://json-schema.org/draft/2020-12/schema" (http), which the
    # referencing library does not know by that spelling: state the dialect instead of detecting it.
    assert package["$schema"] == grant_schema["$schema"] == "http://json-schema.org/draft/2020-12/schema"
    resource = DRAFT202012.create_resource(grant_schema)
    referenced = package["properties"]["grants"]["items"]["$ref"]
    registry = Registry().with_resources([(grant_schema["$id"], resource), (referenced, resource)])
    Draft202012Validator.check_schema(package)
    Draft202012Validator.check_schema(grant_schema)
    return Draft202012Validator(package, registry=registry, format_checker=FORMATS)


def assert_valid(package: dict[str, Any]) -> None:
    errors = sorted(package_validator().iter_errors(package), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# --- inputs -----------------------------------------------------------------------------------------------


#: The register numbers these mapping tests were written with (the samples have since gained checked
#: ones for eligibility; the export maps whatever number an application carries, it does not check it).
NUMBERS_OF_THESE_TESTS: dict[str, str | None] = {"vlaio-spearhead-2019": "0700.000.001"}


def sample(name: str, **changes: Any) -> Application:
    data = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    data["applicant"]["organisation_number"] = NUMBERS_OF_THESE_TESTS.get(name)
    data.update(changes)
    return Application.model_validate(data)


#: The samples grants() commits, in its order (their contact persons must appear in no export).
GRANT_SAMPLES = (
    "vlaio-spearhead-2019",
    "vlaio-cluster-pact-hermes",
    "ttc-voucher",
    "ttc-fund-without-matching",
    "s3-financing-vinnvaxt",
    "nic-nce",
)


def grants() -> list[CommittedGrant]:
    """One committed grant per programme with a grant, from the local samples."""
    return [
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000001",
            sample("vlaio-spearhead-2019"),
            grant("vlaio.clusters", {2020: 40_000_000, 2021: 50_000_000}),
            COMMITTED,
        ),
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000002",
            sample("vlaio-cluster-pact-hermes"),
            grant(
                "vlaio.hermes",
                {2018: 100_000_000, 2019: 90_000_000, 2020: 80_000_000},
                instrument="hermes-earmark",
                shares=[("hermes", 1, 1)],
                conditional=True,
            ),
            COMMITTED,
        ),
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000003",
            sample("ttc-voucher"),
            grant("ttc", {2012: 500_000}, instrument="innovation-voucher", shares=TTC_SHARES),
            COMMITTED,
        ),
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000004",
            sample(
                "ttc-fund-without-matching",
                title="Cross-border sensor pilot",
                summary="Pilot line for medical sensors built by partners in Hasselt and Eindhoven.",
            ),
            grant("ttc", {2013: 12_345_67, 2014: 10_000_00}, instrument="innovation-fund-grant", shares=TTC_SHARES),
            COMMITTED,
        ),
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000005",
            sample("s3-financing-vinnvaxt"),
            grant("s3", {2019: 30_000_000, 2020: 30_000_000}, currency="SEK", instrument="s3-pilot-financing"),
            COMMITTED,
        ),
        CommittedGrant.from_proposed(
            "00000000-0000-4000-8000-000000000006",
            sample("nic-nce"),
            grant("nic", {2025: 200_000_000, 2026: 150_000_000}, currency="NOK", instrument="cluster-gce"),
            COMMITTED,
        ),
    ]


def demo() -> OpenDataConfig:
    return opendata.load_config(DEMO_FILE)


def config(**changes: Any) -> OpenDataConfig:
    """The demo values with some keys changed (a dotted path -> value; None unsets)."""
    data = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return OpenDataConfig.model_validate(data)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- 360Giving JSON ----------------------------------------------------------------------------------------


def test_the_json_package_validates_against_the_published_360giving_schema(tmp_path: Path) -> None:
    output = tmp_path / "grants.json"
    count = opendata.write_360giving(grants(), demo(), output, fmt="json", issued=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert count == 6
    text = output.read_text(encoding="utf-8")
    package = json.loads(text, parse_float=Decimal)
    assert_valid(package)
    assert package["version"] == "1.4"
    assert package["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert len({g["id"] for g in package["grants"]}) == 6
    # the in-memory package (Decimal amounts) is valid too
    assert_valid(opendata.threesixtygiving_package(grants(), demo()))


def test_the_validator_really_applies_the_grant_schema() -> None:
    package = opendata.threesixtygiving_package(grants()[:1], demo())
    del package["grants"][0]["title"]
    package["grants"][0]["currency"] = "XXY"
    messages = [e.message for e in package_validator().iter_errors(package)]
    assert messages, "a grant without a title and with a bad currency must be invalid"
    empty = {**package, "grants": []}
    assert list(package_validator().iter_errors(empty))


def test_one_grant_maps_as_documented() -> None:
    [spc] = opendata.to_360giving(grants()[:1], demo())
    assert spc == {
        "id": "360G-demo-clustergrants-DEMO-VLAIO-SPC-001",
        "title": "Cluster coordination subsidy to Demo Speerpuntcluster vzw",
        "description": "Cluster coordination subsidy under VLAIO innovation clusters (demo title) "
        "(scheme vlaio.spearhead-cluster).",
        "currency": "EUR",
        "amountAwarded": Decimal("900000.00"),
        "awardDate": "2019-10-02",
        "plannedDates": [{"startDate": "2020-01-01", "endDate": "2021-12-31"}],
        "recipientOrganization": [
            {
                "id": "BE-BCE_KBO-0700000001",
                "name": "Demo Speerpuntcluster vzw",
                "addressRegion": "Vlaanderen",
                "addressCountry": "Belgium",
            }
        ],
        "beneficiaryLocation": [{"name": "Vlaanderen", "countryCode": "BE", "geoCode": "BE2", "geoCodeType": "NUTS1"}],
        "fundingOrganization": [{"id": "360G-demo-funder-vlaio", "name": "VLAIO (demo entry)"}],
        "grantProgramme": [{"code": "vlaio.clusters", "title": "VLAIO innovation clusters (demo title)"}],
        "dateModified": "2019-10-02T22:30:00+00:00",
        "dataSource": "https://example.org/clustergrants-demo/360giving",
    }


def test_regions_without_a_code_and_a_file_without_a_data_source_publish_neither() -> None:
    config = demo().model_copy(
        update={"region_codes": {}, "threesixtygiving": demo().threesixtygiving.model_copy(update={"data_source": None})}
    )
    [spc] = opendata.to_360giving(grants()[:1], config)
    assert spc["beneficiaryLocation"] == [{"name": "Vlaanderen", "countryCode": "BE"}]
    assert "dataSource" not in spc


def test_a_region_code_needs_a_code_and_a_type(tmp_path: Path) -> None:
    bad = tmp_path / "od.yaml"
    bad.write_text('region_codes: {"BE": {"Vlaanderen": {code: "BE 2"}}}\n', encoding="utf-8")
    with pytest.raises(opendata.OpenDataError, match=r"region_codes\.BE\.Vlaanderen"):
        opendata.load_config(bad)


def test_title_and_summary_of_the_application_are_published_when_given() -> None:
    fund = opendata.to_360giving([grants()[3]], demo())[0]
    assert fund["title"] == "Cross-border sensor pilot"
    assert fund["description"] == "Pilot line for medical sensors built by partners in Hasselt and Eindhoven."
    assert fund["recipientOrganization"][0]["id"] == f"360G-demo-clustergrants-app-{grants()[3].application_id}"


def test_recipient_org_ids_use_the_operator_scheme_or_the_360giving_prefix() -> None:
    spc = grants()[0]
    assert opendata.recipient_org_id(spc, demo(), "360G-x") == "BE-BCE_KBO-0700000001"
    no_scheme = config(recipient_org_id_schemes={})
    assert opendata.recipient_org_id(spc, no_scheme, "360G-x") == "360G-x-org-BE-0700000001"
    voucher = grants()[2]  # no organisation number
    assert opendata.recipient_org_id(voucher, demo(), "360G-x") == f"360G-x-app-{voucher.application_id}"


# --- amounts, dates, rates --------------------------------------------------------------------------------


def test_amounts_are_exact_decimals_with_two_places_never_floats(tmp_path: Path) -> None:
    assert str(opendata.major_units(1, "EUR")) == "0.01"
    assert str(opendata.major_units(500_000, "EUR")) == "5000.00"
    assert str(opendata.major_units(0, "SEK")) == "0.00"
    assert str(opendata.major_units(9_007_199_254_740_993, "NOK")) == "90071992547409.93"  # beyond a float's 2**53
    fund = grants()[3]  # 12,345.67 + 10,000.00
    opendata.write_360giving([fund], demo(), tmp_path / "g.json", fmt="json")
    opendata.write_360giving([fund], demo(), tmp_path / "g.csv", fmt="csv")
    assert '"amountAwarded": 22345.67,' in (tmp_path / "g.json").read_text(encoding="utf-8")
    assert csv_rows((tmp_path / "g.csv").read_text(encoding="utf-8"))[0]["Amount Awarded"] == "22345.67"
    with pytest.raises(TypeError):
        opendata.dumps_json({"amount": 1.5})


def test_released_money_is_not_published_and_dates_follow_the_years_left() -> None:
    voucher = grants()[0]
    reduced = CommittedGrant.from_proposed(
        voucher.grant_id,
        sample("vlaio-spearhead-2019"),
        grant("vlaio.clusters", {2020: 40_000_000, 2021: 50_000_000}),
        COMMITTED,
        amounts={2020: 40_000_000, 2021: 0},
    )
    [item] = opendata.to_360giving([reduced], demo())
    assert item["amountAwarded"] == Decimal("400000.00")
    assert item["plannedDates"] == [{"startDate": "2020-01-01", "endDate": "2020-12-31"}]
    assert opendata.planned_dates(reduced) == (date(2020, 1, 1), date(2020, 12, 31))


def test_the_union_co_financing_rate_is_the_eu_fund_share_in_percent() -> None:
    assert opendata.percent(Fraction(2497011, 4994022)) == Decimal("50.00")
    assert opendata.percent(Fraction(1, 3)) == Decimal("33.33")
    assert opendata.percent(Fraction(2, 3)) == Decimal("66.67")
    assert opendata.percent(Fraction(1, 8)) == Decimal("12.50")
    assert opendata.eu_share(grants()[2]) == Fraction(1, 2)
    assert opendata.eu_share(grants()[0]) == 0


# --- 360Giving CSV -----------------------------------------------------------------------------------------


def _title(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "title" in node:
        return str(node["title"])
    ref = node["$ref"]
    assert ref.startswith("#/$defs/")
    return str(schema["$defs"][ref.removeprefix("#/$defs/")]["title"])


def heading_from_schema(path: tuple[str | int, ...]) -> str:
    """The standard's flattened heading of a field: the titles along its path joined by ':'
    (arrays of objects: the array's title, then the item field's title)."""
    _, schema = _schemas()
    node: dict[str, Any] = {"properties": schema["properties"]}
    titles: list[str] = []
    for step in path:
        if isinstance(step, int):
            items = node["items"]
            node = schema["$defs"][items["$ref"].removeprefix("#/$defs/")]
            continue
        assert step in node["properties"], f"{step} is not a field of the 360Giving schema"
        node = node["properties"][step]
        titles.append(_title(schema, node))
    return ":".join(titles)


@pytest.mark.parametrize(("heading", "path"), THREESIXTYGIVING_COLUMNS, ids=[h for h, _ in THREESIXTYGIVING_COLUMNS])
def test_every_csv_column_is_a_360giving_field_titled_as_the_schema_titles_it(heading: str, path: tuple[str | int, ...]) -> None:
    assert heading == heading_from_schema(path)
    if len(path) == 3:  # a field of the first item of an array: the schema lets it roll up to the grant row
        _, schema = _schemas()
        assert path[2] in schema["properties"][path[0]]["rollUp"], f"{heading} cannot roll up"


def test_the_csv_has_the_standard_headings_and_reads_back_into_valid_grants(tmp_path: Path) -> None:
    output = tmp_path / "grants.csv"
    assert opendata.write_360giving(grants(), demo(), output, fmt="csv") == 6
    raw = output.read_bytes()
    assert raw.startswith(b"Identifier,Title,Description,Currency,Amount Awarded,Award Date,")
    rows = csv_rows(raw.decode("utf-8"))
    assert [r["Amount Awarded"] for r in rows] == ["900000.00", "2700000.00", "5000.00", "22345.67", "600000.00", "3500000.00"]
    assert rows[4]["Currency"] == "SEK"
    assert rows[5]["Recipient Org:Country"] == "Norway"
    rebuilt: list[dict[str, Any]] = []
    for row in rows:
        item: dict[str, Any] = {}
        for heading, path in THREESIXTYGIVING_COLUMNS:
            if not row[heading]:
                continue
            value: Any = Decimal(row[heading]) if heading == "Amount Awarded" else row[heading]
            if len(path) == 1:
                item[str(path[0])] = value
            else:
                item.setdefault(str(path[0]), [{}])[0][str(path[2])] = value
        rebuilt.append(item)
    assert rebuilt == json.loads(opendata.dumps_json(opendata.to_360giving(grants(), demo())), parse_float=Decimal)
    assert_valid({"version": "1.4", "grants": rebuilt})


# --- the EU list of operations ------------------------------------------------------------------------------


def test_the_eu_list_holds_only_grants_with_an_eu_fund_share(tmp_path: Path) -> None:
    output = tmp_path / "operations.csv"
    assert opendata.write_eu_operations(grants(), demo(), output) == 2
    text = output.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(EU_OPERATION_COLUMNS)
    voucher, fund = csv_rows(text)
    assert voucher == {
        "Operation code": "DEMO-CCI-DEMO-TTC-VOUCHER",
        "Beneficiary name": "MedTech Aachen GmbH",
        "Operation name": "Innovation voucher to MedTech Aachen GmbH",
        "Operation purpose": "Innovation voucher under Interreg TTC (demo title) (scheme ttc.innovation-voucher).",
        "Start date": "2012-01-01",
        "End date": "2012-12-31",
        "Total cost": "5000.00",
        "Currency": "EUR",
        "Fund": "ERDF",
        "Union co-financing rate (%)": "50.00",
        "Location": "Aachen",
        "Country code": "DE",
        "Country": "Germany",
    }
    assert (fund["Operation name"], fund["Total cost"], fund["Start date"], fund["End date"]) == (
        "Cross-border sensor pilot",
        "22345.67",
        "2013-01-01",
        "2014-12-31",
    )


def test_the_operation_code_template_may_use_the_grant_and_the_award_year() -> None:
    cfg = config(programmes__ttc__eu__operation_code="TTC/{award_year}/{grant_id}", programmes__ttc__eu__cci=None)
    rows = opendata.eu_operation_rows(grants(), cfg)
    assert [r[0] for r in rows[1:]] == [
        "TTC/2019/00000000-0000-4000-8000-000000000003",
        "TTC/2019/00000000-0000-4000-8000-000000000004",
    ]


# --- personal data ----------------------------------------------------------------------------------------


def test_no_contact_name_or_e_mail_appears_in_any_export(tmp_path: Path) -> None:
    records = grants()
    contacts = [sample(name).contact for name in GRANT_SAMPLES]
    assert len(contacts) == len(records)
    personal = {c.name for c in contacts} | {c.email for c in contacts} | {c.email.split("@")[0] for c in contacts}
    assert "Anna Schmitz" in personal and "anna.schmitz@example.org" in personal
    opendata.write_360giving(records, demo(), tmp_path / "g.json", fmt="json")
    opendata.write_360giving(records, demo(), tmp_path / "g.csv", fmt="csv")
    opendata.write_eu_operations(records, demo(), tmp_path / "ops.csv")
    for path in tmp_path.iterdir():
        text = path.read_text(encoding="utf-8")
        for value in personal:
            assert value.lower() not in text.lower(), f"{value!r} in {path.name}"
        assert "@" not in text
        for field in ("contactName", "email", "telephone", "Contact Name", "Email", "Phone Number"):
            assert field not in text


# --- refusals ----------------------------------------------------------------------------------------------


def test_an_export_without_the_operator_keys_it_needs_is_refused_naming_them(tmp_path: Path) -> None:
    output = tmp_path / "grants.json"
    with pytest.raises(OpenDataError) as refused:
        opendata.write_360giving(grants(), opendata.load_config(EXAMPLE_FILE), output, fmt="json")
    message = str(refused.value)
    for key in (
        "threesixtygiving.identifier_prefix",
        "threesixtygiving.license",
        "threesixtygiving.publisher.name",
        "programmes.ttc.funding_organisation.id",
        "programmes.nic.funding_organisation.name",
    ):
        assert key in refused.value.missing_keys
        assert key in message
    assert "OPENDATA_FILE" in message and str(EXAMPLE_FILE) in message
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_each_missing_key_is_named_alone_when_the_rest_is_set() -> None:
    cfg = config(programmes__ttc__funding_organisation={"id": "360G-demo-funder-ttc", "name": None})
    with pytest.raises(OpenDataError) as refused:
        opendata.threesixtygiving_rows(opendata.to_360giving(grants(), cfg))
    assert refused.value.missing_keys == ("programmes.ttc.funding_organisation.name",)
    # a programme without grants in the export needs nothing
    assert opendata.to_360giving(grants()[:1], cfg)
    with pytest.raises(OpenDataError) as refused:
        opendata.threesixtygiving_package(grants()[:1], config(threesixtygiving__license=None))
    assert refused.value.missing_keys == ("threesixtygiving.license",)


def test_the_eu_list_refuses_without_an_operation_code_scheme_or_its_cci() -> None:
    with pytest.raises(OpenDataError) as refused:
        opendata.eu_operation_rows(grants(), config(programmes__ttc__eu__operation_code=None))
    assert refused.value.missing_keys == ("programmes.ttc.eu.operation_code",)
    with pytest.raises(OpenDataError) as refused:
        opendata.eu_operation_rows(grants(), config(programmes__ttc__eu__cci=None))
    assert refused.value.missing_keys == ("programmes.ttc.eu.cci",)
    # only EU operations need the EU keys
    assert len(opendata.eu_operation_rows(grants()[:1], opendata.load_config(EXAMPLE_FILE))) == 1


def test_an_empty_package_is_refused_but_an_empty_csv_has_its_header() -> None:
    with pytest.raises(OpenDataError, match="at least one"):
        opendata.threesixtygiving_package([], demo())
    assert opendata.threesixtygiving_rows([]) == [[h for h, _ in THREESIXTYGIVING_COLUMNS]]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("threesixtygiving: {prefix: 360G-x}\n", "prefix"),
        ("threesixtygiving: {identifier_prefix: GB-x}\n", "identifier_prefix"),
        ("programmes: {ttc: {eu: {operation_code: 'TTC-{year}'}}}\n", "unknown placeholder"),
        ("programmes: {ttc: {eu: {operation_code: 'TTC-{cci}'}}}\n", "application_id"),
        ("programmes: {ttc: {eu: {operation_code: '{application_id.__class__}'}}}\n", "bare name"),
        ("recipient_org_id_schemes: {NO: NO-BRC}\n", "quote the country codes"),
    ],
)
def test_a_bad_operator_file_is_refused_with_the_file_and_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "opendata.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OpenDataError) as refused:
        opendata.load_config(path)
    assert str(path) in str(refused.value) and problem in str(refused.value)


def test_the_example_file_documents_every_key_unset_and_the_demo_file_is_labelled() -> None:
    data = yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))

    def leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
        if isinstance(node, dict):
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}".lstrip("."))]
        return [(path, node)]

    assert [(k, v) for k, v in leaves(data) if v is not None] == []
    full = OpenDataConfig.model_validate(data)
    assert set(full.programmes) == {"vlaio.clusters", "vlaio.hermes", "ttc", "s3", "nic"}
    keys = {k for k, _ in leaves(full.model_dump())}
    keys -= {k for k in keys if ".eu." in k and not k.startswith("programmes.ttc.")}  # EU keys: EU programmes only
    assert keys == {k for k, _ in leaves(data)}, "a key of the model is missing from the example file"
    assert "DEMO VALUES" in DEMO_FILE.read_text(encoding="utf-8")
    assert set(demo().programmes) == set(full.programmes)
