"""The budget's figures: the document file (`pots.yaml`, every figure with its source) merged with
the operator file named by BUDGET_POTS_FILE. Read once, by the composition root or the CLI; a bad
file stops the process with the file, the key and the problem."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from services.budget.beneficiaries import BeneficiaryCeiling
from services.budget.domain import COUNT, BudgetConfig, Ceiling, Period, PotSpec, ProgrammeSpec
from shared.money import Currency

DOCUMENT_FILE = Path(__file__).with_name("pots.yaml")

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,119}$")]
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=1000)]
Minor = Annotated[int, Field(strict=True, ge=0)]
Year = Annotated[int, Field(strict=True, ge=2000, le=2100)]


class ConfigError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodEntry(_Strict):
    """The budget years a programme runs: `open-year` opens only the next of them, in turn."""

    first_year: Year
    last_year: Year
    source: Source

    @model_validator(mode="after")
    def _in_order(self) -> PeriodEntry:
        if self.first_year > self.last_year:
            raise ValueError("first_year must not come after last_year")
        return self


class ProgrammeEntry(_Strict):
    programme: Id
    currency: Currency
    yearly_maximum_required: bool = False
    period: PeriodEntry | None = None
    source: Source


class PotEntry(_Strict):
    pot_id: Id
    programme: Id
    fund: Id
    currency: Currency
    budget_year: Year | None = None
    total_minor: Minor | None = None
    source: Source


class CountEntry(_Strict):
    pot_id: Id
    programme: Id
    instruments: list[Id] = Field(min_length=1)
    max_count: Annotated[int, Field(strict=True, ge=0)] | None = None
    range: tuple[Annotated[int, Field(strict=True, ge=0)], Annotated[int, Field(strict=True, ge=0)]] | None = None
    source: Source

    @model_validator(mode="after")
    def _within_range(self) -> CountEntry:
        if self.range is not None:
            low, high = self.range
            if low > high:
                raise ValueError("range must be [lowest, highest]")
            if self.max_count is not None and not low <= self.max_count <= high:
                raise ValueError(f"max_count {self.max_count} lies outside the document's range {low}-{high}")
        return self


class CeilingEntry(_Strict):
    scheme: Id
    instrument: Id
    currency: Currency
    yearly_ceiling_minor: Minor | None = None
    grant_ceiling_minor: Minor | None = None
    max_years: Annotated[int, Field(strict=True, ge=1, le=50)] | None = None
    from_year: Year | None = None
    to_year: Year | None = None
    source: Source


class DatedValue(_Strict):
    """A value in force from a date (`from` None: undated, in force from the start)."""

    from_: date | None = Field(default=None, alias="from")
    maximum: Annotated[int, Field(strict=True, ge=0)]


class BeneficiaryCeilingEntry(_Strict):
    """A ceiling on what one beneficiary receives across all its grants of a scheme's instrument.

    `reading` says how the quoted words limit: `cap` (the most that is granted: a grant is cut to
    what is left) or `refuse` (the most one may ask for or receive: a request above it is refused)."""

    limit_id: Id
    scheme: Id
    instrument: Id
    kind: Literal["yearly", "total", "years", "grants"]
    reading: Literal["cap", "refuse"]
    currency: Currency | None = None
    values: list[DatedValue] = Field(min_length=1)
    quote: Source
    source: Source
    operator_may_override: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> BeneficiaryCeilingEntry:
        if (self.kind in ("yearly", "total")) != (self.currency is not None):
            raise ValueError("a money ceiling (yearly, total) names its currency; a count (years, grants) does not")
        if self.kind == "grants" and self.reading == "cap":
            raise ValueError("a number of grants cannot be cut: reading must be 'refuse'")
        dates = [v.from_ for v in self.values]
        if len(set(dates)) != len(dates):
            raise ValueError("two values from the same date")
        return self


class BudgetFile(_Strict):
    programmes: list[ProgrammeEntry] = Field(default_factory=list)
    pots: list[PotEntry] = Field(default_factory=list)
    counts: list[CountEntry] = Field(default_factory=list)
    ceilings: list[CeilingEntry] = Field(default_factory=list)
    beneficiary_ceilings: list[BeneficiaryCeilingEntry] = Field(default_factory=list)


def read_file(path: Path) -> BudgetFile:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: (file): {error}") from None
    try:
        return BudgetFile.model_validate(data or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise ConfigError(f"{path}: {problems}") from None


def merge(document: BudgetFile, operator: BudgetFile | None, operator_path: Path | None = None) -> BudgetConfig:
    """Document figures first; the operator fills in what the documents leave open, and adds."""
    where = str(operator_path or "operator file")
    programmes = {p.programme: p for p in document.programmes}
    pots: dict[str, PotEntry | CountEntry] = {}
    document_entries: list[PotEntry | CountEntry] = [*document.pots, *document.counts]
    for entry in document_entries:
        if entry.pot_id in pots:
            raise ConfigError(f"{DOCUMENT_FILE}: pot_id {entry.pot_id!r} appears twice")
        pots[entry.pot_id] = entry
    ceilings = list(document.ceilings)
    per_beneficiary: dict[str, BeneficiaryCeilingEntry] = {}
    for b in document.beneficiary_ceilings:
        if b.limit_id in per_beneficiary:
            raise ConfigError(f"{DOCUMENT_FILE}: beneficiary ceiling {b.limit_id!r} appears twice")
        per_beneficiary[b.limit_id] = b
    if operator is not None:
        for b in operator.beneficiary_ceilings:
            known_b = per_beneficiary.get(b.limit_id)
            if known_b is not None:
                if not known_b.operator_may_override:
                    raise ConfigError(
                        f"{where}: beneficiary_ceilings.{b.limit_id}: a document figure; an operator file cannot change it"
                    )
                same = (known_b.scheme, known_b.instrument, known_b.kind, known_b.currency)
                if (b.scheme, b.instrument, b.kind, b.currency) != same:
                    raise ConfigError(
                        f"{where}: beneficiary_ceilings.{b.limit_id}: "
                        "scheme, instrument, kind and currency must be the document's"
                    )
                # The operator overrides the reading of the document's words (e.g. "een innovatievoucher"):
                # its values and source replace the document's, which the source names.
                b = b.model_copy(update={"operator_may_override": True})
            per_beneficiary[b.limit_id] = b
        for programme in operator.programmes:
            known = programmes.get(programme.programme)
            if known is None:
                programmes[programme.programme] = programme
                continue
            if known.currency != programme.currency:
                raise ConfigError(f"{where}: programmes.{programme.programme}: the documents give {known.currency}")
            if programme.period is not None:
                if known.period is not None and known.period != programme.period:
                    raise ConfigError(
                        f"{where}: programmes.{programme.programme}.period: the documents give "
                        f"{known.period.first_year}-{known.period.last_year}; an operator file cannot change it"
                    )
                # The documents leave this programme's period open: the operator sets it.
                programmes[programme.programme] = known.model_copy(update={"period": programme.period})
        operator_entries: list[PotEntry | CountEntry] = [*operator.pots, *operator.counts]
        for entry in operator_entries:
            known_entry = pots.get(entry.pot_id)
            if known_entry is None:
                pots[entry.pot_id] = entry
                continue
            fillable = isinstance(known_entry, CountEntry) and known_entry.max_count is None
            if not fillable or not isinstance(known_entry, CountEntry) or not isinstance(entry, CountEntry):
                raise ConfigError(f"{where}: {entry.pot_id}: a document figure; an operator file cannot change it")
            if known_entry.programme != entry.programme or set(known_entry.instruments) != set(entry.instruments):
                raise ConfigError(f"{where}: {entry.pot_id}: programme and instruments must be the document's")
            if entry.max_count is not None and known_entry.range is not None:
                low, high = known_entry.range
                if not low <= entry.max_count <= high:
                    raise ConfigError(
                        f"{where}: {entry.pot_id}.max_count: {entry.max_count} lies outside the document's range {low}-{high}"
                    )
            pots[entry.pot_id] = entry.model_copy(update={"range": known_entry.range})
        ceilings += operator.ceilings
    specs: list[PotSpec] = []
    for entry in pots.values():
        declared = programmes.get(entry.programme)
        if declared is None:
            raise ConfigError(f"{entry.pot_id}: programme {entry.programme!r} is not declared under programmes")
        programme = declared
        if isinstance(entry, PotEntry):
            if entry.currency != programme.currency:
                raise ConfigError(f"{entry.pot_id}: currency {entry.currency}, but {entry.programme} is in {programme.currency}")
            specs.append(
                PotSpec(
                    pot_id=entry.pot_id,
                    programme=entry.programme,
                    unit=entry.currency,
                    total=entry.total_minor,
                    source=entry.source,
                    fund=entry.fund,
                    budget_year=entry.budget_year,
                )
            )
        else:
            specs.append(
                PotSpec(
                    pot_id=entry.pot_id,
                    programme=entry.programme,
                    unit=COUNT,
                    total=entry.max_count,
                    source=entry.source,
                    instruments=tuple(sorted(entry.instruments)),
                    allowed_range=entry.range,
                )
            )
    keys = [(s.programme, s.fund, s.unit, s.budget_year) for s in specs if not s.is_count]
    if len(set(keys)) != len(keys):
        raise ConfigError("two money pots share programme, fund, currency and budget year")
    return BudgetConfig(
        programmes={
            name: ProgrammeSpec(
                p.programme,
                p.currency,
                p.source,
                p.yearly_maximum_required,
                Period(p.period.first_year, p.period.last_year, p.period.source) if p.period else None,
            )
            for name, p in programmes.items()
        },
        pots=tuple(sorted(specs, key=lambda s: s.pot_id)),
        ceilings=tuple(
            Ceiling(
                scheme=c.scheme,
                instrument=c.instrument,
                currency=c.currency,
                source=c.source,
                yearly_minor=c.yearly_ceiling_minor,
                total_minor=c.grant_ceiling_minor,
                max_years=c.max_years,
                from_year=c.from_year,
                to_year=c.to_year,
            )
            for c in ceilings
        ),
        beneficiary_ceilings=tuple(
            BeneficiaryCeiling(
                limit_id=b.limit_id,
                scheme=b.scheme,
                instrument=b.instrument,
                kind=b.kind,
                reading=b.reading,
                values=tuple((v.from_, v.maximum) for v in b.values),
                source=b.source,
                quote=b.quote,
                currency=b.currency,
                operator_may_override=b.operator_may_override,
            )
            for _, b in sorted(per_beneficiary.items())
        ),
    )


def load(operator_file: str | Path | None) -> BudgetConfig:
    operator_path = Path(operator_file) if operator_file else None
    operator = read_file(operator_path) if operator_path is not None else None
    return merge(read_file(DOCUMENT_FILE), operator, operator_path)
