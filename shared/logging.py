"""Structured logs, configured once per process: JSON off a terminal, readable on one.

Context (event id, application id, correlation id) is bound per message with
`structlog.contextvars.bound_contextvars`; every line then carries it. Personal data (names,
e-mail addresses) is never passed to a logger: log identifiers, never contact details.

Two guarantees hold in every format (JSON and console alike), for our own lines, for the
libraries' (stdlib logging) and for uncaught exceptions:

* A traceback never shows local variables: exceptions are rendered by the standard library's
  plain traceback (file, line, source, exception message), never by rich's or better-exceptions'
  renderers, which print every frame's locals (a DSN with its password among them).
* Secrets are never printed: every rendered line is scrubbed of the secret values it was given
  (`configure_logging(secrets=...)`, `secrets_of(settings)`) and of the secret settings shared by
  every service read from the environment (DATABASE_URL with its password, KAFKA_SASL_PASSWORD),
  in their raw, JSON-escaped and repr forms, before it is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from pydantic import BaseModel, SecretStr

REDACTED = "[redacted]"
#: Shorter values are not scrubbed: they would blank out ordinary words; secrets are longer.
MIN_SECRET_LENGTH = 4

_LIBPQ_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def secret_forms(value: str) -> set[str]:
    """What of `value` must never appear: the value, a DSN's password, each comma-separated item."""
    forms = {value}
    forms.update(part.strip() for part in value.split(","))
    try:
        password = urlsplit(value).password
    except ValueError:
        password = None
    if password:
        forms.update({password, unquote(password)})
    for match in _LIBPQ_PASSWORD.finditer(value):
        forms.add(match.group(1).strip("'"))
    scrubbed: set[str] = set()
    for form in forms:
        if len(form) >= MIN_SECRET_LENGTH:
            # As written, as a JSON renderer escapes it and as repr() (the console renderer) does.
            scrubbed.update({form, json.dumps(form)[1:-1], repr(form)[1:-1]})
    return scrubbed


def secrets_of(settings: BaseModel) -> list[str]:
    """Every SecretStr value of a settings object."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    return values


def _environment_secrets() -> list[str]:
    """The secret settings every service shares, as the environment gives them."""
    from shared.settings import CommonSettings

    names = [n for n, f in CommonSettings.model_fields.items() if "SecretStr" in str(f.annotation)]
    found = [os.environ.get(n.upper()) or os.environ.get(n) for n in names]
    return [v for v in found if v]


class Redactor:
    """The last step before a line is written: replaces every secret form by `[redacted]`."""

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None

    def set(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= secret_forms(secret)
        # Longest first: a DSN goes whole before its password is looked for.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def __call__(self, _logger: Any, _name: str, rendered: Any) -> Any:
        if isinstance(rendered, str):
            return self.scrub(rendered)
        if isinstance(rendered, bytes):
            return self.scrub(rendered.decode("utf-8", "replace")).encode()
        return rendered


REDACTOR = Redactor()


class _StderrLogger:
    """Where structlog writes our own rendered lines: the process's stderr as it is at each line (a
    test's capture included), a whole line at a time, from any thread. A line that cannot be written
    (stderr closed, a broken pipe to the log collector) is dropped, as stdlib logging's handler drops
    it: logging never makes the work that logs fail."""

    _lock = threading.Lock()

    def __init__(self, *_args: Any) -> None:  # structlog passes get_logger's arguments (a name)
        pass

    def msg(self, message: str) -> None:
        with self._lock:
            try:
                stream = sys.stderr
                stream.write(message + "\n")
                stream.flush()
            except (OSError, ValueError, AttributeError):  # closed, broken, or no stderr at all
                pass

    debug = info = warning = warn = error = err = critical = fatal = exception = log = failure = msg


_log = structlog.get_logger("uncaught")


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    _log.critical("uncaught exception; exiting", exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log.critical(
            "uncaught exception in a thread",
            thread=args.thread.name if args.thread else None,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def configure_logging(service: str, log_format: str = "auto", level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Configure structlog and stdlib logging for this process; `secrets` are scrubbed from every line."""
    threshold = logging.getLevelNamesMapping().get(level.upper())
    if threshold is None:
        raise ValueError(f"unknown log level {level!r}: DEBUG, INFO, WARNING or ERROR")
    REDACTOR.set([*secrets, *_environment_secrets()])
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    # Our own lines are rendered by structlog itself and written straight to stderr: through the
    # standard library (a LogRecord, its handler and ProcessorFormatter) a line cost ~90 µs of CPU,
    # this way ~40 (bench/logging_bench.py). The libraries' lines still come through stdlib logging,
    # rendered by the same processors. Both end with the redactor, which sees the whole line.
    rendering = [structlog.processors.format_exc_info, renderer, REDACTOR]
    structlog.configure(
        processors=[*shared, *rendering],
        logger_factory=_StderrLogger,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            # format_exc_info renders exc_info as the standard library does (no locals) in both
            # formats; the redactor sees the whole rendered line, traceback included.
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    # Libraries speak only when something is wrong; our own lines say what happened.
    for noisy in ("aiokafka", "faststream", "uvicorn.access", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # An exception nobody caught is a log line like any other: same format, same scrubbing.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
