"""Dated scheme parameters and operator-set parameters, loaded from YAML; split by job:

* `values`: exact parsing of money, percentages, dates... (a float is refused) and the errors;
* `scheme_file`: a scheme's `parameters.yaml`, every figure its document states, dated;
* `operator_file`: the agency's file of what the documents leave open, read against the keys the
  schemes declare;
* `store`: the values in force on a day, the one thing criteria read (`InForce`).

Import from here; the names below are the package's interface.
"""

from services.eligibility.parameters.operator_file import (
    OPERATOR_FILE_ENV,
    OperatorKey,
    OperatorParameterError,
    OperatorParameters,
    OperatorParameterUnset,
)
from services.eligibility.parameters.scheme_file import (
    UNDATED,
    DatedValue,
    Parameter,
    SchemeParameterError,
    SchemeParameters,
    Source,
)
from services.eligibility.parameters.store import SCHEMES_DIR, InForce, ParameterNotInForce, ParameterStore
from services.eligibility.parameters.values import (
    UNITS,
    LimitReading,
    ParameterError,
    ParamValue,
    parse_date,
    parse_decimal,
    parse_int,
    parse_money,
    parse_percent,
    raw_repr,
)

__all__ = [
    "OPERATOR_FILE_ENV",
    "SCHEMES_DIR",
    "UNDATED",
    "UNITS",
    "DatedValue",
    "InForce",
    "LimitReading",
    "OperatorKey",
    "OperatorParameterError",
    "OperatorParameterUnset",
    "OperatorParameters",
    "ParamValue",
    "Parameter",
    "ParameterError",
    "ParameterNotInForce",
    "ParameterStore",
    "SchemeParameterError",
    "SchemeParameters",
    "Source",
    "parse_date",
    "parse_decimal",
    "parse_int",
    "parse_money",
    "parse_percent",
    "raw_repr",
]
