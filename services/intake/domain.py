"""Intake's rules: turn raw input into an `Application`, or into every error that stops it. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.events import Application, ApplicationSubmitted, Contact, FieldError

APPLICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # as the contract's ApplicationId


@dataclass(frozen=True)
class Invalid:
    errors: list[FieldError]
    application_id: str | None
    language: str | None
    contact: Contact | None


def body_fingerprint(application: Application) -> str:
    """Same application, same fingerprint: tells a resubmission from a conflicting one."""
    canonical = json.dumps(application.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _best_effort(document: Any) -> tuple[str | None, str | None, Contact | None]:
    """What a rejection can still tell: the id, language and contact, if they are readable."""
    if not isinstance(document, dict):
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


def nul_characters(value: Any, loc: list[str | int]) -> list[FieldError]:
    """Strings with U+0000: JSON allows them, PostgreSQL text cannot hold them, no form field needs them."""
    found: list[FieldError] = []
    stack: list[tuple[Any, list[str | int]]] = [(value, loc)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            found.append(FieldError(loc=path, type="string_nul_character", message="text must not contain NUL (U+0000)"))
        elif isinstance(node, dict):
            for key, child in node.items():
                if "\x00" in key:
                    found.append(FieldError(loc=path, type="string_nul_character", message="a field name contains NUL (U+0000)"))
                stack.append((child, [*path, key.replace("\x00", "")]))
        elif isinstance(node, list):
            stack.extend((child, [*path, i]) for i, child in enumerate(node))
    return sorted(found, key=lambda e: [str(p) for p in e.loc])


def parse_submission(raw: bytes) -> Application | Invalid:
    """Validate one submission; every field error is reported, none is guessed."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"body is not valid JSON: {error.msg if isinstance(error, json.JSONDecodeError) else 'not UTF-8'}"
        return Invalid([FieldError(loc=[], type="json_invalid", message=message)], None, None, None)
    except RecursionError:
        message = "body is not acceptable JSON: nested too deeply"
        return Invalid([FieldError(loc=[], type="json_invalid", message=message)], None, None, None)
    nul = nul_characters(document, [])
    if nul:
        # Nothing of it is stored or echoed: not even the id or the contact, which may hold the NUL.
        return Invalid(nul, None, None, None)
    app_id, language, contact = _best_effort(document)
    if not isinstance(document, dict):
        return Invalid([FieldError(loc=[], type="object_expected", message="body must be a JSON object")], None, None, None)
    try:
        submitted = ApplicationSubmitted.model_validate(document)
    except ValidationError as error:
        errors = [
            FieldError(loc=list(e["loc"]), type=e["type"], message=e["msg"])
            for e in error.errors(include_url=False, include_input=False)
        ]
        return Invalid(errors, app_id, language, contact)
    return Application.model_validate(submitted.model_dump())
