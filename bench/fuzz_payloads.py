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
        return rng.choice(
            [b"", b"null", b"[]", b"42", b'"text"', b"{", b"{}" * 1000, b"\xff\xfe\xfd", *(DEEP if known_bugs else ())]
        )
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
