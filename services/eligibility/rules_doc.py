"""RULES.md, generated from the scheme folders: criteria, message keys, parameters, operator keys.

    python -m services.eligibility.rules_doc --write    # rewrite services/eligibility/RULES.md
    python -m services.eligibility.rules_doc            # print it

`make docs` runs it; `tests/unit/eligibility/test_eligibility_docs.py` fails when RULES.md is stale.

The message keys of a criterion are read from its code: every key its check (and the scheme
helpers it calls, with the texts it passes them) hands to `passed`, `failed`, `undecidable`,
`Undecidable` or `Verdict`, plus `<prefix>.operator_parameter_unset` where it reads an operator
key. A key this reading cannot resolve stops the generator with the place it is made.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from services.eligibility.parameters import OperatorKey, Parameter, ParameterStore, SchemeParameters
from services.eligibility.schemes import OPERATOR_KEYS, SCHEMES, scheme_dir, schemes_reading
from services.eligibility.schemes.common import Criterion, SchemeRules
from shared.money import Money

RULES_MD: Final = Path(__file__).with_name("RULES.md")
LANGUAGE_NAMES: Final = {
    "nl": "Dutch",
    "sv": "Swedish",
    "nb": "Norwegian (Bokmål)",
    "en": "English",
    "de": "German",
    "fr": "French",
}
EMITTERS: Final = {"passed": 0, "failed": 0, "undecidable": 0, "Undecidable": 0, "Verdict": 1}
SCHEMES_PACKAGE: Final = "services.eligibility.schemes"


class UnresolvedKey(ValueError):
    """A message key the generator cannot read from the code (name the place, fix the code)."""


# --- message keys, read from the criteria's code --------------------------------------------------------


def _function_node(fn: types.FunctionType) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise UnresolvedKey(f"{fn.__qualname__}: not a plain function")
    return node


def _text(node: ast.expr, env: dict[str, str], where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                parts.append(_text(value.value, env, where))
            else:
                parts.append(_text(value, env, where))
        return "".join(parts)
    raise UnresolvedKey(f"{where}: cannot read a message key from {ast.unparse(node)}")


def _resolve_callee(fn: types.FunctionType, name: str) -> types.FunctionType | None:
    closure = inspect.getclosurevars(fn)
    target = closure.nonlocals.get(name, closure.globals.get(name))
    if isinstance(target, types.FunctionType) and target.__module__.startswith(SCHEMES_PACKAGE):
        return target
    return None


def _bind(callee: types.FunctionType, call: ast.Call, env: dict[str, str]) -> dict[str, str]:
    """The texts a call passes to the callee's parameters (what is not a known text is left out)."""
    names = list(inspect.signature(callee).parameters)
    bound: dict[str, str] = {}
    for index, arg in enumerate(call.args):
        if index < len(names):
            with contextlib.suppress(UnresolvedKey):
                bound[names[index]] = _text(arg, env, "")
    for keyword in call.keywords:
        if keyword.arg is not None:
            with contextlib.suppress(UnresolvedKey):
                bound[keyword.arg] = _text(keyword.value, env, "")
    return bound


def _scan(fn: types.FunctionType, env: dict[str, str], keys: list[str], seen: set[object]) -> bool:
    """Append the keys `fn` emits to `keys`; True if it (or a helper it calls) reads an operator key."""
    marker = (fn, tuple(sorted(env.items())))
    if marker in seen:
        return False
    seen.add(marker)
    where = f"{fn.__module__}.{fn.__qualname__}"
    reads_operator = False
    calls = sorted((n for n in ast.walk(_function_node(fn)) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for node in calls:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if isinstance(func, ast.Attribute) and name == "op":
            reads_operator = True
            continue
        index = EMITTERS.get(name)
        if index is not None:
            if len(node.args) > index:
                key = _text(node.args[index], env, f"{where}:{node.lineno}")
                if key not in keys:
                    keys.append(key)
            continue
        if isinstance(func, ast.Name):
            callee = _resolve_callee(fn, func.id)
            if callee is not None:
                reads_operator |= _scan(callee, _bind(callee, node, env), keys, seen)
    return reads_operator


def criterion_keys(criterion: Criterion) -> list[str]:
    """Every message key `criterion` can give, in the order its code makes them."""
    check = criterion.check
    if not isinstance(check, types.FunctionType):
        raise UnresolvedKey(f"{criterion.id}: the check is not a function")
    env = {k: v for k, v in inspect.getclosurevars(check).nonlocals.items() if isinstance(v, str)}
    keys: list[str] = []
    if _scan(check, env, keys, set()):
        keys.append(f"{criterion.key_prefix}.operator_parameter_unset")
    return keys


# --- formatting -------------------------------------------------------------------------------------


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _module_summary(rules: SchemeRules) -> str:
    module = sys.modules.get(rules.propose.__module__)
    doc = inspect.getdoc(module) if module is not None else None
    return _first_paragraph(doc or "")


def _value(value: object, currency: str) -> str:
    if isinstance(value, Money):
        major, minor = divmod(value.amount_minor, 100)
        return f"{value.currency} {major:,}" + (f".{minor:02d}" if minor else "")
    if isinstance(value, Fraction):
        pct = value * 100
        return f"{pct.numerator if pct.denominator == 1 else float(pct)} %"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}→{v}" for k, v in value.items())
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _values(parameter: Parameter, currency: str) -> str:
    return "; ".join(
        f"{_value(v.value, currency)} ({'undated' if v.valid_from.year == 1 else v.valid_from.isoformat()})"
        for v in parameter.values
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(head: tuple[str, ...], rows: Iterator[tuple[str, ...]] | list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _key_meaning(key: OperatorKey[Any]) -> str:
    if key.limit is None:
        return key.description
    return f"{key.description} Limit ({key.limit.kind}): {key.limit.reading}"


# --- the page ---------------------------------------------------------------------------------------

INTRO: Final = """\
# Eligibility rules

<!-- Generated by `python -m services.eligibility.rules_doc --write` (`make docs`) from the scheme
folders; edit the code, the parameter files or the generator, not this page. -->

The pure rules engine of the eligibility service: `domain.evaluate(application, parameters)`
decides one application against its scheme, criterion by criterion, with the parameters in force
on the **reference date** (the day of `submitted_at` in the scheme's time zone). Every criterion is
evaluated and listed; the outcome is `ineligible` if any failed, else `needs_review` if any is
`not_decidable` (a case handler decides), else `eligible` with a proposed grant.

Source documents: the seed files in `../shared/seeds/` beside the repository (000, 001 VLAIO;
002 TTC; 003 Tillväxtverket; 004 Norway), each cited below by publisher, title and date. The
documents win over this page and over `../shared/SCHEMES.md`.

## How the rules are kept

A scheme is one folder, `schemes/<scheme>/`, found by the engine (`schemes/__init__.py`): nothing
is registered by hand.

- `parameters.yaml`: the document it comes from (`source:` publisher, title, date, seed file,
  language) and every figure the document states, with `unit:` and `reference:` (seed file and
  quote), dated OpenFisca-style (`values: {2020-06-11: {value: ...}}`). `undated` means the
  document states the figure without saying since when: it is in force from before any date the
  system decides on until the first dated value. A rule change is a new dated value; never edit
  the past.
- `criteria.py`: small pure criteria `(application, in_force) -> CriterionResult` (via
  `@criterion(id, key_prefix)`) and `propose` (the grant), exported as `RULES`, which also declares
  the operator keys the rules read (a scheme reads no key it does not declare), and for a
  competitive scheme its assessment criteria and selection cap. A check of an operator value
  against the scheme's parameters (the S3 cap within 20-25) sits on the key it checks.
- `cases.yaml`: cases a scheme officer can read; `tests/unit/eligibility` runs them all. Only the
  criteria that do not pass are listed in a case; every other one must pass.
- Rules a family shares sit beside the folders (`vlaio_common.py`, `ttc_common.py`,
  `s3_common.py`); criterion seedwork in `common.py`.
- Money is integer minor units (cents, öre, øre), percentages exact `Fraction`s; a float in any
  parameter file is refused. Amounts derived from a percentage are rounded DOWN to whole minor
  units (the grant never exceeds the share); a required co-financing amount is rounded UP.
- `parameter_version` = `<scheme>@<latest valid-from in force, or "undated">#<hash>`; the hash
  covers what the scheme's parameter file computes with (units and dated values, not the quotes)
  and the operator values of the keys the scheme declares.

The message keys of each criterion are read from its code by the generator. Besides them, any
criterion may give `<key prefix>.parameter_not_in_force` (figures `parameter`, `reference_date`),
not decidable, when a parameter it reads has no value in force on the reference date; and
`<key prefix>.operator_parameter_unset` (figure `parameter`) is listed where a criterion reads an
operator key.
"""

OPERATOR_INTRO: Final = """\
## Operator parameters

Set by the operating agency in the YAML file named by `ELIGIBILITY_OPERATOR_PARAMETERS_FILE`
(see `operator-parameters.example.yaml`, which documents every key, all unset). Validated at
start-up: `OperatorParameterError` names the file, the key and the problem; unknown keys are
refused. An unset key makes the criteria that need it `not_decidable`; it is never guessed. Each
key is declared in the folder of the scheme that reads it (a family's key in its helper module).
"""

PROGRAMMES_INTRO: Final = "## Programmes and funds (for the budget service)\n"
PROGRAMMES: Final = (
    ("vlaio.spearhead-cluster, vlaio.business-network", "`vlaio.clusters`", "`coordination-subsidy`", "`agency` 1/1"),
    (
        "vlaio.spearhead-project",
        "`vlaio.spearhead-projects`",
        "(no grant: amounts follow each project type's own procedure, not in the documents)",
        "",
    ),
    ("vlaio.cluster-pact", "`vlaio.hermes`", "`hermes-earmark` (`conditional: true`)", "`hermes` 1/1"),
    (
        "ttc.innovation-voucher",
        "`ttc`",
        "`innovation-voucher`",
        "`erdf` 2497011/4994022, `co-financing` 2497011/4994022 (kept in cents, unreduced)",
    ),
    ("ttc.innovation-fund", "`ttc`", "`innovation-fund-grant`", "as the voucher"),
    ("s3.platform", "`s3`", "(no grant: step 1 is the learning platform)", ""),
    ("s3.financing", "`s3`", "`s3-pilot-financing`", "`agency` 1/1"),
    ("nic.cluster", "`nic`", "`cluster-arena`, `cluster-arena-pro`, `cluster-gce`", "`agency` 1/1"),
)
"""What each scheme's `propose` gives the budget (a test checks every grant of the cases against it)."""
PROGRAMMES_OUTRO: Final = """\
Counted limits are the budget service's, not eligibility's: 35 TTC vouchers (`vouchers_total` in
`ttc_innovation_voucher/parameters.yaml`), 20-25 S3 selections (`s3.platform`'s assessment).
"""

COMPETITION_INTRO: Final = """\
## Competitive calls and what-if (pure parts)

- `competition.rank_and_select(candidates, criteria, cap)`: total = sum over the criteria of the
  mean of the assessors' scores (exact); ties: total desc, earliest `submitted_at`, then
  `application_id` asc. The criteria and the cap's operator key are each competitive scheme's
  `RULES.assessment` (below); `selection_cap(store, scheme)` reads the cap.
- `whatif.what_if(applications, current, proposed)`: per application the outcome, schedule and
  criteria before and after.
"""

READINGS: Final = """\
## Readings of the documents (where they are not explicit)

- VLAIO closing: the page was marked closed when last changed on 11 June 2020; the real closing
  day is not stated, so the closing is dated on that day. Add an earlier dated value if the agency
  confirms one.
- Limits are read word by word (each scheme's "Limits" table below quotes the words): where the
  document caps what is *granted* ("maximum toegekende subsidie", "bedraagt 50%", "een
  innovatievoucher van 5 000 EUR", "een voorwaardelijk engagement ... voor drie jaar", the Hermes
  maximum), a request beyond it is eligible, granted the limit, and the criterion says the cap
  applied with its figures; where it limits what may be *asked* ("Högsta belopp att söka", "subsidies
  ... aan te vragen", "ska vara max fyra sidor"), a request beyond it is refused. Each year of a
  proposal shows what was asked (`requested`), what is granted (`amount`) and the limit that bound
  (`limited_by`); years beyond a cap on the number of years are listed as `not_granted`.
- VLAIO coordination: per budget year min(requested, 50 % of that year's eligible costs rounded down
  to the cent, the yearly ceiling), for the track's first 10 or 3 budget years; where both 50 % and
  the ceiling cut a year, the lower one is named.
- Norway gives no amounts: the operator's maxima per level limit the request (refused above them),
  since nothing in 004 lets the programme grant less than asked.
- "consortia van ondernemingen": at least two enterprises (a consortium is more than one).
- Coordination support goes to *recognised* spearhead clusters ("erkende speerpuntclusters"):
  the recognised list is operator-set; the same list gates the project route and the pact.
- TTC region: the document names a corridor of places, not an exhaustive list: another place in
  DE/BE/NL is referred to a case handler; a country outside DE/BE/NL is refused. The fund is
  cross-border: partners from at least two of DE/BE/NL. "Evenredige financiering": no secured
  matching funding at all is refused; the required proportion is operator-set.
- S3 co-financing 50 %: secured co-financing at least 50 % of the project's total eligible costs;
  SEK 600,000 is the total over at most two budget years, all within the pilot 2018-2021.
- Norway: "business in the driver's seat" = every member marked `leads_cluster` is a business
  actor; no member marked -> not decidable. The deadline of the submission's calendar year applies.
"""


def _scheme_section(scheme: str, rules: SchemeRules, params: SchemeParameters) -> list[str]:
    folder = scheme_dir(scheme).name
    lines = [f"### `{scheme}`", ""]
    summary = _module_summary(rules)
    if summary:
        lines += [summary, ""]
    lines += [
        f"Folder `schemes/{folder}/`; time zone {params.time_zone}; currency {params.currency}; programme `{params.programme}`.",
        f"Source: {params.source.cite()}, in {LANGUAGE_NAMES[params.source.language]}.",
        "",
    ]
    lines += _table(
        ("criterion", "what it checks", "message keys"),
        [(f"`{c.id}`", _first_paragraph(c.doc), ", ".join(f"`{k}`" for k in criterion_keys(c))) for c in rules.criteria],
    )
    lines.append("")
    lines += _table(
        ("parameter", "unit", "values (valid from)", "source"),
        [(f"`{p.name}`", p.unit, _values(p, params.currency), p.reference) for p in params.parameters.values()],
    )
    limits = [(f"`{p.name}`", p.limit) for p in params.parameters.values() if p.limit is not None]
    limits += [(f"`{k.key}` (operator)", k.limit) for k in rules.operator_keys if k.limit is not None]
    if limits:
        language = params.source.language
        lines += ["", "Limits, read word by word:", ""]
        lines += _table(
            ("limit", "what it limits", f"the document's words ({LANGUAGE_NAMES[language]})", "in English", "reading"),
            [
                (
                    name,
                    "what is granted (capped)" if reading.kind == "granted" else "what may be asked (refused)",
                    f'"{reading.quote[language]}"' if reading.quote else "(not in the document)",
                    f'"{reading.quote["en"]}"' if reading.quote else "",
                    reading.reading,
                )
                for name, reading in limits
            ],
        )
    if rules.operator_keys:
        lines += ["", "Operator keys: " + ", ".join(f"`{k.key}`" for k in rules.operator_keys) + "."]
    if rules.assessment is not None:
        assessment = rules.assessment
        lines += [
            "",
            f"Competitive selection: {assessment.doc} Assessors score "
            + ", ".join(f"`{c}`" for c in assessment.criteria)
            + f"; at most `{assessment.cap.key}` are selected.",
        ]
    lines.append("")
    return lines


def render(store: ParameterStore | None = None) -> str:
    store = store or ParameterStore.load()
    out: list[str] = [INTRO, OPERATOR_INTRO]
    out += _table(
        ("key", "read by", "meaning"),
        [(f"`{k}`", ", ".join(schemes_reading(k)), _key_meaning(key)) for k, key in OPERATOR_KEYS.items()],
    )
    out += ["", PROGRAMMES_INTRO]
    out += _table(("scheme", "programme", "instrument", "fund shares"), list(PROGRAMMES))
    out += ["", PROGRAMMES_OUTRO, COMPETITION_INTRO, READINGS, "## Schemes", ""]
    for scheme, rules in SCHEMES.items():
        out += _scheme_section(scheme, rules, store.scheme(scheme))
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None, write: Callable[[str], object] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args == ["--write"]:
        (write or RULES_MD.write_text)(text)
    elif not args:
        sys.stdout.write(text)
    else:
        raise SystemExit("usage: python -m services.eligibility.rules_doc [--write]")


if __name__ == "__main__":
    main()
