"""The budget figures: document values with their source; the operator fills in only what is open."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.budget.config import DOCUMENT_FILE, ConfigError, load, read_file
from tests.unit.budget.builders import config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_document_file_holds_the_seed_figures_with_their_sources() -> None:
    docs = config()
    pots = {p.pot_id: p for p in docs.pots}
    assert pots["ttc/erdf"].total == 2_497_011_00
    # (ignore below) money pots: totals set
    assert pots["ttc/erdf"].total + pots["ttc/co-financing"].total == 4_994_022_00  # type: ignore[operator]
    assert pots["ttc/innovation-voucher/count"].total == 35
    assert pots["s3/selection"].total is None  # 20-25: the operator's to choose
    assert pots["s3/selection"].allowed_range == (20, 25)
    ceilings = {(c.scheme, c.instrument): c for c in docs.ceilings}
    assert (
        ceilings["vlaio.spearhead-cluster", "coordination-subsidy"].yearly_minor,
        ceilings["vlaio.spearhead-cluster", "coordination-subsidy"].max_years,
    ) == (500_000_00, 10)
    assert (
        ceilings["vlaio.business-network", "coordination-subsidy"].yearly_minor,
        ceilings["vlaio.business-network", "coordination-subsidy"].max_years,
    ) == (150_000_00, 3)
    assert (
        ceilings["s3.financing", "s3-pilot-financing"].total_minor,
        ceilings["s3.financing", "s3-pilot-financing"].max_years,
    ) == (600_000_00, 2)
    assert docs.programmes["vlaio.hermes"].yearly_maximum_required
    assert all("seed" in p.source for p in docs.pots)
    assert all("seed" in c.source for c in docs.ceilings)


def test_operator_cannot_change_a_document_figure() -> None:
    with pytest.raises(ConfigError, match="document figure"):
        config(
            {
                "pots": [
                    {
                        "pot_id": "ttc/erdf",
                        "programme": "ttc",
                        "fund": "erdf",
                        "currency": "EUR",
                        "total_minor": 1,
                        "source": "operator",
                    }
                ]
            }
        )
    with pytest.raises(ConfigError, match="document figure"):
        config(
            {
                "counts": [
                    {
                        "pot_id": "ttc/innovation-voucher/count",
                        "programme": "ttc",
                        "instruments": ["innovation-voucher"],
                        "max_count": 40,
                        "source": "operator",
                    }
                ]
            }
        )


def test_operator_sets_the_selection_cap_within_the_document_range() -> None:
    entry = {"pot_id": "s3/selection", "programme": "s3", "instruments": ["s3-pilot-financing"], "source": "operator"}
    assert {p.pot_id: p.total for p in config({"counts": [{**entry, "max_count": 25}]}).pots}["s3/selection"] == 25
    with pytest.raises(ConfigError, match="outside the document's range 20-25"):
        config({"counts": [{**entry, "max_count": 30}]})


def test_amounts_must_be_integers_of_minor_units(tmp_path: Path) -> None:
    bad = tmp_path / "pots.yaml"
    bad.write_text("pots:\n  - {pot_id: x/a, programme: ttc, fund: a, currency: EUR, total_minor: 10.5, source: op}\n")
    with pytest.raises(ConfigError, match=r"pots\.0\.total_minor"):
        read_file(bad)


def test_local_demo_file_loads_and_labels_its_values() -> None:
    demo = ROOT / "deploy" / "local" / "budget-pots.yaml"
    loaded = load(demo)
    own = [p for p in loaded.pots if "demo" in p.source]
    assert {p.pot_id for p in own} >= {"vlaio.clusters/agency", "s3/agency"}
    assert read_file(DOCUMENT_FILE).pots  # the document file parses on its own too
