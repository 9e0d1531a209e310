"""Applications for the bench, the chaos run and the fuzz run: a realistic mix of every scheme's sample,
valid and invalid, each with its own application id and its own (made-up, traceable) contact.

The valid samples of deploy/local/samples/ are cycled through (every scheme), with about 8 % invalid
submissions (field errors, with a contact, so the applicant is told) and 2 % malformed JSON (no id, no
contact: a rejection event and nothing else). The contact of every submission carries `pii_token`, so a
log search for it finds any personal data that reached a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "deploy" / "local" / "samples"

Kind = Literal["valid", "invalid", "malformed"]


@dataclass(frozen=True)
class Submission:
    index: int
    kind: Kind
    application_id: str | None
    scheme: str
    body: bytes


def _samples() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for path in sorted(SAMPLES.glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue  # the malformed sample: made below
        (invalid if path.name.startswith("zz-") else valid).append(document)
    return valid, invalid


VALID, INVALID = _samples()
SCHEMES = sorted({d["scheme"] for d in VALID})


def submission(index: int, run: str, pii_token: str, invalid_every: int = 12, malformed_every: int = 50) -> Submission:
    """The `index`-th submission of run `run`: deterministic, so a re-run of a chaos step is the same input."""
    if malformed_every and index % malformed_every == malformed_every - 1:
        body = b'{"application_id": "' + f"{run}-{index}".encode() + b'", "scheme": '  # truncated JSON
        return Submission(index, "malformed", None, "?", body)
    invalid = bool(invalid_every) and index % invalid_every == invalid_every - 1
    template = INVALID[index % len(INVALID)] if invalid else VALID[index % len(VALID)]
    document = json.loads(json.dumps(template))
    app_id = f"{run}-{index:07d}"
    document["application_id"] = app_id
    document["contact"] = {"name": f"Pii{pii_token} Person{index}", "email": f"pii{pii_token}.p{index}@example.org"}
    return Submission(
        index,
        "invalid" if invalid else "valid",
        app_id,
        str(document.get("scheme")),
        json.dumps(document, separators=(",", ":")).encode(),
    )


def submissions(n: int, run: str, pii_token: str, start: int = 0, **mix: int) -> list[Submission]:
    return [submission(i, run, pii_token, **mix) for i in range(start, start + n)]
