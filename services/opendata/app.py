"""Composition root of the open-data service: the read model's consumer (python -m services.opendata).

The exports (`clustergrants export ...`, services/opendata/cli.py) read what it projected."""

from __future__ import annotations

import asyncio

from services.opendata import handlers
from services.opendata.repository import OpenDataRepository
from services.opendata.settings import OpenDataSettings
from shared.events import ApplicationReceived, Event, GrantCommitted, GrantReleased
from shared.logging import configure_logging
from shared.runtime import ServiceRuntime

#: What the read model is fed: the public topics agency systems read too.
PROJECTED: tuple[type[Event], ...] = (ApplicationReceived, GrantCommitted, GrantReleased)


def build(settings: OpenDataSettings) -> ServiceRuntime[OpenDataRepository]:
    runtime: ServiceRuntime[OpenDataRepository] = ServiceRuntime(
        "opendata", settings, schema="opendata", repositories=OpenDataRepository
    )
    for model in PROJECTED:
        runtime.on(model, handlers.on_events)
    return runtime


def main() -> None:
    settings = OpenDataSettings()
    configure_logging("opendata", settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())
