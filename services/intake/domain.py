"""Intake's rules: turn raw input into an `Application`, or into every error that stops it. Pure.

One validation for both channels (HTTP and the submitted topic), in this order:

1. The bytes must be JSON as RFC 8259 exchanges it: UTF-8, no NaN or Infinity, numbers that fit,
   and no object with the same key twice (`json_duplicate_key`: which value was meant is a guess,
   and two parsers may guess differently).
2. Every string, keys included, must be text a person can see: no NUL (`string_nul_character`),
   no other C0 or C1 control character and no DEL (`string_control_character`; the multi-line
   fields of `MULTILINE_FIELDS` may hold TAB, LF and CR), and no bidirectional override or
   isolate, U+202A-U+202E and U+2066-U+2069 (`string_bidi_control`): they would go on into
   e-mail headers, exports and case-handler screens, where CR/LF splits lines and U+202E shows
   text reversed.
3. The contract (`ApplicationSubmitted`), plus two bounds of this intake's own
   (`SubmissionPolicy`): every amount of money at most `max_amount_minor` (`money_too_large`) and
   `submitted_at` not later than now plus `max_clock_skew` (`submitted_at_in_future`).

Every error is reported at once, each with `loc` and a stable `type`; input values are never
echoed. CloudEvents attributes (HTTP binary and structured mode) are checked here too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Union

from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from shared.events import Application, ApplicationSubmitted, Contact, FieldError
from shared.money import Money

APPLICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # as the contract's ApplicationId
Loc = tuple[str | int, ...]

#: Largest amount of money intake accepts by default, in minor units: 10,000,000,000.00 of the
#: currency. Not a figure of any scheme (no document gives one): a bound of the software, so that
#: the sums the budget keeps in PostgreSQL bigint (at most 9.2e18) can never overflow, whatever a
#: submission holds (at most 20 years x 2 amounts + 50 co-financing amounts). An operator sets a
#: lower one with INTAKE_MAX_AMOUNT_MINOR.
DEFAULT_MAX_AMOUNT_MINOR = 10**12
#: How far ahead of intake's clock a `submitted_at` may be (portals' clocks drift): 5 minutes.
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Longest JSON number intake reads, in characters (Python refuses integers above 4,300 digits).
MAX_NUMBER_CHARS = 100

#: Fields that may span lines: TAB, LF and CR are allowed there, no other control character.
MULTILINE_FIELDS: frozenset[Loc] = frozenset({("summary",)})
_MULTILINE_ALLOWED = frozenset("\t\n\r")
_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
_CONTROL = frozenset(chr(c) for c in (*range(0x01, 0x20), 0x7F, *range(0x80, 0xA0)))
_SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class SubmissionPolicy:
    """The operator-set bounds of what intake accepts (IntakeSettings)."""

    max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW


DEFAULT_POLICY = SubmissionPolicy()


@dataclass(frozen=True)
class Invalid:
    errors: list[FieldError]
    application_id: str | None
    language: str | None
    contact: Contact | None


# --- the conflict fingerprint -----------------------------------------------------------------


def _normalised(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value


def body_fingerprint(application: Application) -> str:
    """Same application, same fingerprint: tells a resubmission from a conflicting one.

    It hashes the *validated* application, so what the contract already normalises counts as the
    same: key order, insignificant whitespace and escapes of the JSON, text fields' leading and
    trailing spaces (stripped), optional fields left out or sent with their default. On top of
    that, every instant is taken in UTC: `10:00+02:00` and `08:00Z` are the same body. What stays
    significant: every value, the order of lists (members, years, documents) and the case of text
    (e-mail addresses included: their local part may be case-sensitive).
    """
    canonical = json.dumps(
        to_jsonable_python(_normalised(application.model_dump(mode="python"))), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- strict JSON -----------------------------------------------------------------------------


class _Object(dict[str, Any]):
    """A JSON object as read, remembering the keys it had more than once."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj and key not in obj.duplicates:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _number(text: str, kind: type[int] | type[float]) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise _NotJson(f"a number longer than {MAX_NUMBER_CHARS} characters")
    value = kind(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise _NotJson("a number out of range")
    return value


class UnreadableJson(Exception):
    """The bytes are not JSON intake reads: `error` (type `json_invalid`) says why."""

    def __init__(self, message: str, loc: Loc = ()) -> None:
        super().__init__(message)
        self.error = FieldError(loc=list(loc), type="json_invalid", message=message)


def load_json(raw: bytes, loc: Loc = ()) -> Any:
    """The document, read strictly (UTF-8, no NaN, bounded numbers, duplicate keys remembered for
    `text_errors`); UnreadableJson if it cannot be read at all."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableJson("body is not valid JSON: not UTF-8", loc) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_int=lambda t: _number(t, int),
            parse_float=lambda t: _number(t, float),
        )
    except json.JSONDecodeError as error:
        raise UnreadableJson(f"body is not valid JSON: {error.msg}", loc) from None
    except _NotJson as error:
        raise UnreadableJson(f"body is not acceptable JSON: {error}", loc) from None
    except RecursionError:
        raise UnreadableJson("body is not acceptable JSON: nested too deeply", loc) from None


def _clean_key(key: str) -> str:
    """A key as it may appear in a `loc`: without the characters that are refused."""
    return _SUSPECT.sub("\ufffd", key)


def text_errors(document: Any, loc: Loc = ()) -> list[FieldError]:
    """Duplicate keys and refused characters anywhere in a document (keys included)."""
    found: list[FieldError] = []
    stack: list[tuple[Any, Loc]] = [(document, loc)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _SUSPECT.search(node):  # most text is clean: no more work for it
                found += _character_errors(node, path, path[len(loc) :] in MULTILINE_FIELDS)
        elif isinstance(node, dict):
            for key in getattr(node, "duplicates", ()):
                found.append(
                    FieldError(
                        loc=[*path, _clean_key(key)],
                        type="json_duplicate_key",
                        message="the key appears more than once in its object; send it once",
                    )
                )
            for key, child in node.items():
                if _SUSPECT.search(key):
                    child_path = (*path, _clean_key(key))
                    found += [
                        FieldError(loc=list(child_path), type=e.type, message=f"a field name {e.message.removeprefix('text ')}")
                        for e in _character_errors(key, child_path, False)
                    ]
                else:
                    child_path = (*path, key)
                stack.append((child, child_path))
        elif isinstance(node, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(node))
    return sorted(found, key=lambda e: ([str(p) for p in e.loc], e.type))


def _character_errors(text: str, loc: Loc, multiline: bool) -> list[FieldError]:
    if not _SUSPECT.search(text):
        return []
    chars = set(text)
    errors: list[FieldError] = []
    if "\x00" in chars:
        errors.append(FieldError(loc=list(loc), type="string_nul_character", message="text must not contain NUL (U+0000)"))
    control = (chars & _CONTROL) - (_MULTILINE_ALLOWED if multiline else frozenset())
    if control:
        allowed = "; only TAB, LF and CR are allowed in this multi-line field" if multiline else ""
        errors.append(
            FieldError(
                loc=list(loc),
                type="string_control_character",
                message=f"text must not contain control characters (U+0001-U+001F, U+007F-U+009F){allowed}",
            )
        )
    if chars & _BIDI:
        errors.append(
            FieldError(
                loc=list(loc),
                type="string_bidi_control",
                message="text must not contain bidirectional overrides or isolates (U+202A-U+202E, U+2066-U+2069)",
            )
        )
    return errors


# --- bounds of our own -----------------------------------------------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """The classes an annotation may hold, through Optional, unions, Annotated and lists."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _unwrap(arg)]
    if origin is list:
        return [("*", c) for c in _unwrap(typing.get_args(annotation)[0])]
    return [annotation]


def money_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where a model holds Money ('*' for every item of a list), found from its fields' types."""
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        for kind in _unwrap(field.annotation):
            path = (*prefix, name)
            while isinstance(kind, tuple):
                path, kind = (*path, kind[0]), kind[1]
            if isinstance(kind, type) and issubclass(kind, Money):
                paths.append(path)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                paths += money_paths(kind, path)
    return paths


MONEY_PATHS = money_paths(ApplicationSubmitted)
_AWARE_DATETIME = TypeAdapter(AwareDatetime)  # built once: building one costs more than validating with it


def _at(document: Any, pattern: tuple[str, ...], loc: Loc = ()) -> list[tuple[Loc, Any]]:
    if not pattern:
        return [(loc, document)]
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        if not isinstance(document, list):
            return []
        return [found for i, item in enumerate(document) for found in _at(item, rest, (*loc, i))]
    if not isinstance(document, dict) or head not in document:
        return []
    return _at(document[head], rest, (*loc, head))


def bound_errors(document: dict[str, Any], policy: SubmissionPolicy, now: datetime, loc: Loc = ()) -> list[FieldError]:
    """Amounts over the maximum and a submission time in the future, read from the raw document so
    that they are reported together with the contract's errors."""
    errors: list[FieldError] = []
    for pattern in MONEY_PATHS:
        for path, money in _at(document, pattern):
            amount = money.get("amount_minor") if isinstance(money, dict) else None
            if isinstance(amount, int) and not isinstance(amount, bool) and amount > policy.max_amount_minor:
                errors.append(
                    FieldError(
                        loc=[*loc, *path, "amount_minor"],
                        type="money_too_large",
                        message=f"amount_minor must not exceed {policy.max_amount_minor} (this intake's maximum)",
                    )
                )
    try:
        submitted_at = _AWARE_DATETIME.validate_python(document.get("submitted_at"))
    except ValidationError:
        submitted_at = None  # the contract reports it
    if submitted_at is not None and submitted_at > now + policy.max_clock_skew:
        skew = int(policy.max_clock_skew.total_seconds())
        errors.append(
            FieldError(
                loc=[*loc, "submitted_at"],
                type="submitted_at_in_future",
                message=f"submitted_at is later than now plus the allowed clock skew of {skew} s",
            )
        )
    return errors


# --- one submission ----------------------------------------------------------------------------


def _best_effort(document: Any, errors: list[FieldError], loc: Loc) -> tuple[str | None, str | None, Contact | None]:
    """What a rejection can still tell: the id, language and contact, if they are readable and none of
    them is where a duplicate key or a refused character was found (then none of it is trusted)."""
    if not isinstance(document, dict):
        return None, None, None
    tainted = {e.loc[len(loc)] if len(e.loc) > len(loc) else None for e in errors}
    if tainted & {None, "application_id", "language", "contact"}:
        return None, None, None
    app_id = document.get("application_id")
    app_id = app_id if isinstance(app_id, str) and APPLICATION_ID.fullmatch(app_id) else None
    language = document.get("language")
    language = language if language in ("nl", "sv", "nb", "en", "de", "fr") else None
    try:
        contact = Contact.model_validate(document.get("contact"))
    except ValidationError:
        contact = None
    return app_id, language, contact


def parse_document(
    document: Any,
    policy: SubmissionPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
    *,
    loc: Loc = (),
    prior: list[FieldError] | None = None,
) -> Application | Invalid:
    """Validate a read JSON document (`loc`: where it sits, e.g. ('data',) in a CloudEvent).
    `prior`: errors already found around it (CloudEvents attributes), reported with its own."""
    now = now or datetime.now(UTC)
    prior = list(prior or [])
    characters = text_errors(document, loc)
    if characters:
        # Nothing more is read: the contract's own messages would quote field names holding them.
        return Invalid(prior + characters, *_best_effort(document, characters, loc))
    if not isinstance(document, dict):
        return Invalid(
            [*prior, FieldError(loc=list(loc), type="object_expected", message="must be a JSON object")], None, None, None
        )
    app_id, language, contact = _best_effort(document, [], loc)
    errors = list(prior)
    submitted: ApplicationSubmitted | None = None
    try:
        submitted = ApplicationSubmitted.model_validate(document)
    except ValidationError as error:
        errors += [
            FieldError(loc=[*loc, *e["loc"]], type=e["type"], message=e["msg"])
            for e in error.errors(include_url=False, include_input=False)
        ]
    errors += bound_errors(document, policy, now, loc)
    if errors or submitted is None:
        return Invalid(errors, app_id, language, contact)
    # The same fields, validated once already (ApplicationSubmitted adds none): no second validation.
    return Application.model_construct(**dict(submitted))


def parse_submission(
    raw: bytes, policy: SubmissionPolicy = DEFAULT_POLICY, now: datetime | None = None, *, prior: list[FieldError] | None = None
) -> Application | Invalid:
    """Validate one submission (the JSON body of an application); every field error is reported."""
    try:
        document = load_json(raw)
    except UnreadableJson as unreadable:
        return Invalid([*(prior or []), unreadable.error], None, None, None)
    return parse_document(document, policy, now, prior=prior)


# --- CloudEvents over HTTP ---------------------------------------------------------------------

SPECVERSION = "1.0"
SUBMITTED_TYPE = ApplicationSubmitted.cloudevents_type()
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_URI_CHARS = re.compile(r"^([A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
JSON_MEDIA_TYPES = frozenset({"application/json"})


def is_uri_reference(value: str) -> bool:
    """RFC 3986 URI-reference: a URI, or a relative reference whose first segment has no ':'."""
    if not value or not _URI_CHARS.fullmatch(value):
        return False
    head = re.split(r"[/?#]", value, maxsplit=1)[0]
    if ":" in head:
        return bool(_SCHEME.fullmatch(head.split(":", 1)[0]))
    return True


def is_rfc3339(value: str) -> bool:
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _ce_error(loc: Loc, kind: str, message: str) -> FieldError:
    return FieldError(loc=list(loc), type=f"cloudevents_{kind}", message=message)


def cloudevent_errors(attributes: dict[str, Any], loc: Callable[[str], Loc], *, structured: bool) -> list[FieldError]:
    """The CloudEvents 1.0 attributes of a submission: required ones present and well-formed, `type`
    the submitted type, `time` RFC 3339, `source` a URI-reference. `loc(name)` places an attribute
    (a header in binary mode, a member of the body in structured mode)."""
    errors: list[FieldError] = []
    for name, value in attributes.items():
        if name == "data" or (structured and name == "data_base64"):
            continue
        if not _EXTENSION_NAME.fullmatch(name):
            errors.append(_ce_error(loc(name), "attribute_name", "attribute names are lower-case letters and digits, at most 20"))
        elif not isinstance(value, str | int | bool) or (structured and value is None):
            errors.append(_ce_error(loc(name), "attribute_value", "an attribute value is a string, integer or boolean"))
        elif isinstance(value, str):
            errors += text_errors(value, loc(name))

    def text(name: str) -> str | None:
        value = attributes.get(name)
        return value if isinstance(value, str) else None

    specversion = text("specversion")
    if specversion != SPECVERSION:
        message = "specversion is required" if "specversion" not in attributes else f"specversion must be {SPECVERSION!r}"
        errors.append(_ce_error(loc("specversion"), "specversion", message))
    if not text("id"):
        errors.append(_ce_error(loc("id"), "id", "id is required and must not be empty"))
    source = text("source")
    if source is None or not is_uri_reference(source):
        errors.append(_ce_error(loc("source"), "source", "source is required and must be a URI-reference (RFC 3986)"))
    if text("type") != SUBMITTED_TYPE:
        errors.append(_ce_error(loc("type"), "type", f"type must be {SUBMITTED_TYPE!r} on this endpoint"))
    if "time" in attributes and (text("time") is None or not is_rfc3339(text("time") or "")):
        errors.append(_ce_error(loc("time"), "time", "time must be an RFC 3339 timestamp, e.g. 2020-02-14T09:30:00Z"))
    if "subject" in attributes and not text("subject"):
        errors.append(_ce_error(loc("subject"), "subject", "subject must be a non-empty string"))
    if "dataschema" in attributes and not (text("dataschema") and is_uri_reference(text("dataschema") or "")):
        errors.append(_ce_error(loc("dataschema"), "dataschema", "dataschema must be a URI"))
    content_type = text("datacontenttype")
    if structured and "datacontenttype" in attributes and media_type(content_type or "")[0] not in JSON_MEDIA_TYPES:
        errors.append(_ce_error(loc("datacontenttype"), "datacontenttype", "datacontenttype must be application/json"))
    return errors


def media_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` in lower case and the parameters of a Content-Type value (RFC 9110 8.3)."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, sep, val = item.strip().partition("=")
        if sep:
            params[name.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), params


def parse_structured(raw: bytes, policy: SubmissionPolicy = DEFAULT_POLICY, now: datetime | None = None) -> Application | Invalid:
    """A CloudEvent in structured mode (application/cloudevents+json): attributes and `data` (the
    application) in one JSON object; `data_base64` may carry the application's JSON instead."""
    try:
        envelope = load_json(raw)
    except UnreadableJson as unreadable:
        return Invalid([unreadable.error], None, None, None)
    if not isinstance(envelope, dict):
        return Invalid([FieldError(loc=[], type="object_expected", message="a CloudEvent is a JSON object")], None, None, None)
    duplicates = [
        FieldError(loc=[_clean_key(k)], type="json_duplicate_key", message="the key appears more than once in its object")
        for k in getattr(envelope, "duplicates", ())
    ]
    errors = duplicates + cloudevent_errors(envelope, lambda name: (_clean_key(name),), structured=True)
    if "data" in envelope and "data_base64" in envelope:
        errors.append(_ce_error(("data_base64",), "data", "send either data or data_base64, not both"))
    if "data_base64" in envelope and "data" not in envelope:
        encoded = envelope["data_base64"]
        try:
            decoded = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is None:
            errors.append(_ce_error(("data_base64",), "data", "data_base64 must be base64 (RFC 4648)"))
            return Invalid(errors, None, None, None)
        try:
            document = load_json(decoded, ("data_base64",))
        except UnreadableJson as unreadable:
            return Invalid([*errors, unreadable.error], None, None, None)
        return parse_document(document, policy, now, loc=("data_base64",), prior=errors)
    if "data" not in envelope:
        errors.append(FieldError(loc=["data"], type="missing", message="the application goes in data"))
        return Invalid(errors, None, None, None)
    return parse_document(envelope["data"], policy, now, loc=("data",), prior=errors)
