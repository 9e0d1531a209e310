"""One folder per scheme, discovered: everything a scheme's rules are lives in its folder.

* `parameters.yaml`: the dated figures of its document, each with its source;
* `criteria.py`: its pure criteria and grant proposal, exported as `RULES` (a `SchemeRules`), which
  also declares the operator keys the rules read and, for a competitive scheme, its assessment
  criteria and selection cap; a check of an operator value against the scheme's parameters sits
  on the key it checks;
* `cases.yaml`: cases a scheme officer can read.

Rules shared by a family of schemes sit beside the folders (`vlaio_common.py`, `ttc_common.py`,
`s3_common.py`), seedwork for all schemes in `common.py`. A folder is found by the package it is:
a new scheme is a new folder (and its id in `shared.events.SchemeId`), nothing is registered by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, get_args

from services.eligibility.parameters import OperatorKey
from services.eligibility.schemes.common import SchemeRules
from shared.events import SchemeId

HERE: Final = Path(__file__).parent


def scheme_dir(scheme: str) -> Path:
    """The folder of a scheme: its id with '.' and '-' as '_'."""
    return HERE / scheme.replace(".", "_").replace("-", "_")


def _discover() -> dict[str, SchemeRules]:
    found: dict[str, SchemeRules] = {}
    for module in pkgutil.iter_modules([str(HERE)]):
        if not module.ispkg:
            continue  # the family helpers and the seedwork
        criteria = importlib.import_module(f"{__name__}.{module.name}.criteria")
        rules = getattr(criteria, "RULES", None)
        if not isinstance(rules, SchemeRules):
            raise TypeError(f"{criteria.__name__} must export RULES, a SchemeRules")
        if scheme_dir(rules.scheme).name != module.name:
            raise ValueError(f"{criteria.__name__} declares {rules.scheme}, whose folder is {scheme_dir(rules.scheme).name}")
        found[rules.scheme] = rules
    known = get_args(SchemeId)
    missing = [s for s in known if s not in found]
    if missing:
        raise LookupError(f"no scheme folder for {', '.join(missing)}")
    return {scheme: found[scheme] for scheme in known}


def _operator_keys(schemes: Mapping[str, SchemeRules]) -> dict[str, OperatorKey[Any]]:
    keys: dict[str, OperatorKey[Any]] = {}
    for rules in schemes.values():
        for key in rules.operator_keys:
            other = keys.setdefault(key.key, key)
            if other is not key:
                raise ValueError(f"operator key {key.key} is declared twice, differently ({rules.scheme})")
    return keys


SCHEMES: Final[Mapping[str, SchemeRules]] = _discover()
"""Rules per scheme id, in the order of the `SchemeId` literal of shared/events.py."""

OPERATOR_KEYS: Final[Mapping[str, OperatorKey[Any]]] = _operator_keys(SCHEMES)
"""Every key of the operator file, as the schemes declare them (a key shared by a family, such as
the recognised spearhead clusters, is one object declared in the family's helper module)."""


def schemes_reading(key: str) -> list[str]:
    """The schemes whose rules read operator key `key`."""
    return [scheme for scheme, rules in SCHEMES.items() if any(k.key == key for k in rules.operator_keys)]
