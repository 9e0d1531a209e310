"""Generated submissions for fuzzing the intake: valid samples mutated in structure, type, value and bytes.

`payload(rng, app_id)` returns bytes that are sometimes still a valid application and usually not: a key
dropped or added, a value replaced by another JSON value (wrong type, huge or negative number, odd
unicode, deep nesting), a list emptied or grown, the bytes truncated, flipped or not UTF-8. Driven by a
`random.Random`, so hypothesis (`st.randoms()`) and the seeded fuzz run share the same mutators.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from bench.workload import INVALID, VALID

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**30,
    1.5,
    -0.0,
    1e308,
    "",
    " ",
    "x" * 5000,
    "💶",
    "DROP TABLE applications;",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "2019-02-30T25:61:00Z",
    [],
    {},
    [None],
    {"": None},
    [[[[[[[[[[[]]]]]]]]]]],
    "NaN",
    "1e309",
    {"amount_minor": "12", "currency": "EUR"},
    # Once accepted and passed on into e-mails and exports (issue 10): now string_control_character,
    # string_bidi_control, money_too_large, submitted_at_in_future.
    "Anna\r\nBcc: everyone@example.org",
    "Evil\u202eCorp",
    "\u2066isolated\u2069",
    10**30,
    "2999-01-01T00:00:00Z",
]


#: Inputs that once hit intake bugs (found by this fuzzer): deeply nested JSON made json raise
#: RecursionError, and NUL characters ("\u0000") reached PostgreSQL, which refuses them in text and
#: jsonb: HTTP 500 / a dead letter instead of a specific rejection. Both are now rejections
#: (`json_invalid`, `string_nul_character`); `known_bugs=False` still leaves them out.
NUL_VALUES: list[Any] = ["\u0000", "a\u0000b"]


def _random_value(rng: random.Random, depth: int = 0, known_bugs: bool = True) -> Any:
    roll = rng.random()
    if known_bugs and roll < 0.03:
        return rng.choice(NUL_VALUES)
    if roll < 0.5 or depth > 3:
        return copy.deepcopy(rng.choice(ODD_VALUES))
    if roll < 0.65:
        return rng.randint(-(2**70), 2**70)
    if roll < 0.8:
        return "".join(
            chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF), rng.randint(0x1F300, 0x1F6FF)]))
            for _ in range(rng.randint(0, 40))
        )
    if roll < 0.9:
        return [_random_value(rng, depth + 1, known_bugs) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": _random_value(rng, depth + 1, known_bugs) for i in range(rng.randint(0, 4))}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _mutate_tree(rng: random.Random, document: Any, known_bugs: bool = True) -> Any:
    paths = [p for p in _paths(document) if p]
    if not paths:
        return _random_value(rng, 0, known_bugs)
    path = rng.choice(paths)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = rng.random()
    if action < 0.45:
        parent[last] = _random_value(rng, 0, known_bugs)
    elif action < 0.65:
        del parent[last]
    elif action < 0.75 and isinstance(parent, dict):
        parent[f"unexpected_{rng.randint(0, 99)}"] = _random_value(rng, 0, known_bugs)
    elif action < 0.85 and isinstance(parent[last], list):
        parent[last] = copy.deepcopy(parent[last] * rng.randint(0, 30))
    elif isinstance(parent[last], int) and not isinstance(parent[last], bool):
        parent[last] = rng.choice([-parent[last], parent[last] * 10**12, parent[last] + 0.5, str(parent[last])])
    else:
        parent[last] = _random_value(rng, 0, known_bugs)
    return document


DEEP = (b"[" * 5000, b'{"a":' * 3000, b"[" * 100_000 + b"]" * 100_000)


def _mutate_bytes(rng: random.Random, raw: bytes, known_bugs: bool = True) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return raw[: rng.randint(0, max(0, len(raw) - 1))]
    if roll < 0.6:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if roll < 0.7:
        return raw.decode().encode("utf-16")
    if roll < 0.8:
        return b"\xef\xbb\xbf" + raw  # a byte-order mark
    if roll < 0.9:
        hostile: list[bytes] = [
            b"",
            b"null",
            b"[]",
            b"42",
            b'"text"',
            b"{",
            b"{}" * 1000,
            b"\xff\xfe\xfd",
            b'{"a": NaN}',
            raw.replace(b'"application_id":', b'"application_id": "dup", "application_id":', 1),  # a duplicate key
            raw.replace(b"{", b'{"n": ' + b"9" * 5000 + b", ", 1),  # a number Python will not convert
            *(DEEP if known_bugs else ()),
        ]
        return rng.choice(hostile)
    return json.dumps(rng.choice(ODD_VALUES)).encode()


def payload(rng: random.Random, app_id: str, known_bugs: bool = True) -> bytes:
    """One fuzzed submission with id `app_id` (when the mutation keeps an id at all)."""
    template = rng.choice(VALID + INVALID)
    document = json.loads(json.dumps(template))
    document["application_id"] = app_id
    document["contact"] = {"name": "Fuzz Person", "email": f"fuzz.{app_id.lower()}@example.org"}
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 6])):
        document = _mutate_tree(rng, document, known_bugs)
    raw = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
    if rng.random() < 0.25:
        raw = _mutate_bytes(rng, raw, known_bugs)
    return raw


def good(app_id: str, index: int = 0) -> bytes:
    """A valid submission (a sample) with id `app_id`."""
    document = json.loads(json.dumps(VALID[index % len(VALID)]))
    document["application_id"] = app_id
    return json.dumps(document).encode()


# --- HTTP edges (issue 10): what a hostile or broken portal sends besides bodies ----------------------

#: Hostile text for names and titles: once passed on into e-mails and exports.
HOSTILE_TEXT: list[str] = ["Anna\r\nBcc: everyone@example.org", "Evil\u202eCorp", "\u2066isolated\u2069", "bell\x07", "c1\x85"]


def with_changes(app_id: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid sample with id `app_id`, some top-level fields replaced."""
    document: dict[str, Any] = json.loads(good(app_id, index))
    document.update(changes)
    return document


def duplicate_key(raw: bytes, key: str = "scheme") -> bytes:
    """The same JSON with `key` sent twice (first with another value): which one did the portal mean?"""
    return raw.replace(f'"{key}":'.encode(), f'"{key}": "nic.cluster", "{key}":'.encode(), 1)


def oversized_amount(app_id: str) -> bytes:
    document = with_changes(app_id)
    funding = document.get("funding")
    if funding:
        funding["years"][0]["requested"]["amount_minor"] = 10**30
    return json.dumps(document).encode()


def hostile_text(app_id: str, text: str) -> bytes:
    document = with_changes(app_id)
    document["applicant"]["organisation_name"] = text
    document["contact"]["name"] = text
    return json.dumps(document).encode()


def long_number(app_id: str, digits: int = 5000) -> bytes:
    """A JSON number Python refuses to convert (more than 4,300 digits): once an unhandled ValueError."""
    return good(app_id).replace(b'"application_id"', b'"unexpected": ' + b"7" * digits + b', "application_id"', 1)


def structured_event(app_id: str, **attributes: Any) -> bytes:
    """The application as a CloudEvent in structured mode (application/cloudevents+json)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{app_id}-event",
        "source": "/portals/fuzz",
        "type": "org.clustergrants.application.submitted.v1",
        "time": "2024-01-01T10:00:00+01:00",
        "datacontenttype": "application/json",
        "data": json.loads(good(app_id)),
        **attributes,
    }
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()
