"""The dispatcher's typed row (DueNotification) names exactly the columns of notify.notifications."""

from __future__ import annotations

from typing import get_type_hints

import asyncpg
import pytest

from services.notify.repository import DueNotification

pytestmark = pytest.mark.integration


async def test_due_notification_has_every_column_of_the_table_and_no_other(pool: asyncpg.Pool) -> None:
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'notify' AND table_name = 'notifications'"
        )
    }
    assert columns, "notify.notifications has no columns: not migrated?"
    assert set(get_type_hints(DueNotification)) == columns
