"""The settings table of README.md, generated from the settings classes (`make docs`).

python -m tools.settings_doc --write    # rewrite the table between the README's markers
python -m tools.settings_doc            # print it
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.settings import CommonSettings

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _classes() -> list[tuple[str, type[BaseSettings]]]:
    from services.budget.settings import BudgetSettings
    from services.eligibility.settings import EligibilitySettings
    from services.intake.settings import IntakeSettings
    from services.notify.settings import NotifySettings
    from services.opendata.settings import OpenDataSettings

    return [
        ("all", CommonSettings),
        ("intake", IntakeSettings),
        ("eligibility", EligibilitySettings),
        ("budget", BudgetSettings),
        ("notify", NotifySettings),
        ("opendata", OpenDataSettings),
    ]


def _default(field: object) -> str:
    default = getattr(field, "default", None)
    if isinstance(default, SecretStr):
        return "(secret)"
    if default is None or default == "":
        return ""
    return f"`{default}`"


def table() -> str:
    rows = ["| variable | services | default | meaning |", "|---|---|---|---|"]
    common = set(CommonSettings.model_fields)
    for service, cls in _classes():
        for name, field in cls.model_fields.items():
            if service != "all" and name in common:
                continue
            secret = "SecretStr" in str(field.annotation)
            meaning = (field.description or "").replace("|", "\\|")
            if secret and "never logged" not in meaning.lower():
                meaning = f"{meaning} Secret: never logged.".strip()
            rows.append(f"| `{name.upper()}` | {service} | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def rewrite(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> None:
    if sys.argv[1:] == ["--write"]:
        README.write_text(rewrite(README.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
