"""A scheme is one folder: discovered by the engine, declaring everything its rules read."""

from __future__ import annotations

from datetime import date
from typing import get_args

import pytest

from services.eligibility.competition import ASSESSMENTS, selection_cap
from services.eligibility.parameters import OperatorKey, OperatorParameters, ParameterStore
from services.eligibility.parameters.operator_file import positive_int
from services.eligibility.schemes import HERE, OPERATOR_KEYS, SCHEMES, scheme_dir, schemes_reading
from services.eligibility.schemes.nic_cluster import criteria as nic
from shared.events import SchemeId

pytestmark = pytest.mark.unit

STORE = ParameterStore.load()


def test_every_scheme_id_is_one_folder_with_its_rules_parameters_and_cases() -> None:
    assert list(SCHEMES) == list(get_args(SchemeId))
    folders = sorted(p.name for p in HERE.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(scheme_dir(s).name for s in SCHEMES)
    for scheme, rules in SCHEMES.items():
        folder = scheme_dir(scheme)
        assert rules.scheme == scheme
        for name in ("criteria.py", "parameters.yaml", "cases.yaml"):
            assert (folder / name).is_file(), f"{scheme}: no {name}"
        assert STORE.scheme(scheme).scheme == scheme


def test_every_operator_key_is_declared_by_the_schemes_that_read_it() -> None:
    assert OPERATOR_KEYS, "no operator keys declared"
    for key in OPERATOR_KEYS:
        assert schemes_reading(key), f"{key} is declared by no scheme"
    assert schemes_reading("vlaio.recognised_spearhead_clusters") == [
        "vlaio.spearhead-cluster",
        "vlaio.spearhead-project",
        "vlaio.cluster-pact",
    ]
    assert schemes_reading("nic.levels.gce.yearly_maximum_nok") == ["nic.cluster"]


def test_a_scheme_cannot_read_a_key_it_does_not_declare() -> None:
    in_force = STORE.in_force("ttc.innovation-voucher", date(2012, 4, 2))
    with pytest.raises(KeyError, match="without declaring it"):
        in_force.op(OPERATOR_KEYS["ttc.innovation_fund_matching_share_percent"])


def test_the_version_covers_only_the_keys_the_scheme_declares() -> None:
    day = date(2013, 3, 12)
    share = STORE.with_operator(OperatorParameters.from_mapping({"ttc": {"innovation_fund_matching_share_percent": 100}}))
    assert share.in_force("ttc.innovation-voucher", day).version == STORE.in_force("ttc.innovation-voucher", day).version
    assert share.in_force("ttc.innovation-fund", day).version != STORE.in_force("ttc.innovation-fund", day).version


def test_the_competitive_schemes_declare_their_assessment_and_cap() -> None:
    assert set(ASSESSMENTS) == {"s3.platform", "nic.cluster"}
    assert len(ASSESSMENTS["s3.platform"].criteria) == 7
    assert len(ASSESSMENTS["nic.cluster"].criteria) == 5
    store = STORE.with_operator(OperatorParameters.from_mapping({"nic": {"selection_cap": 8}}))
    assert selection_cap(store, "nic.cluster") == 8


def test_the_nic_levels_of_the_operator_keys_are_the_levels_of_the_document() -> None:
    assert STORE.in_force("nic.cluster", date(2024, 9, 1)).texts("levels") == nic.LEVELS


def test_a_key_checked_against_its_scheme_is_checked_by_the_store() -> None:
    """The S3 cap's range check is declared on the key, in the S3 folder; the store applies it."""
    key = OPERATOR_KEYS["s3.platform_selection_cap"]
    assert key.check is not None
    assert key.check(19, STORE.scheme("s3.platform")) is not None
    assert key.check(20, STORE.scheme("s3.platform")) is None


def test_an_operator_file_is_read_against_the_keys_it_is_given() -> None:
    only: dict[str, OperatorKey[int]] = {"x.cap": OperatorKey("x.cap", positive_int, "a test key")}
    assert OperatorParameters.from_mapping({"x": {"cap": 3}}, keys=only).values == {"x.cap": 3}
    with pytest.raises(ValueError, match="unknown key"):
        OperatorParameters.from_mapping({"nic": {"selection_cap": 3}}, keys=only)
