"""The local stack's Kafka principals: their passwords, kept per state folder, and adding a portal.

    python -m deploy.local.kafka_users add-portal acme       # credentials + ACLs (now, if the stack runs)
    python -m deploy.local.kafka_users remove-portal acme    # its credentials and every ACL it had
    python -m deploy.local.kafka_users list                  # principals and what each may do

Passwords are generated (`secrets.token_urlsafe`) the first time a state folder needs them and kept
in `<state>/secrets/kafka-users.json` (folder 0700, file 0600; `.local/` by default, which git
ignores). They are never printed and never logged; `add-portal` writes the new portal's connection
settings to `<state>/secrets/<portal>.env` (0600) for the operator to hand over.

Tools and tests that act as a given principal (a portal submitting, the agency reader collecting
outcomes, the admin creating topics) find the file through `CLUSTERGRANTS_KAFKA_CREDENTIALS`, which
the stack exports to the command it runs; `client_options(principal)` builds that principal's
aiokafka settings through the same code the services use (shared.kafka_security).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from shared.acl import ADMIN, DEV_PORTALS, acl_lines, portal_name, principals, writes  # noqa: E402
from shared.kafka_security import client_options as settings_options  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402

CREDENTIALS_ENV = "CLUSTERGRANTS_KAFKA_CREDENTIALS"
CONTROLLER = "controller"
"""The broker's own principal towards the KRaft controller listener (SASL PLAIN, server.properties only)."""


def state_dir() -> Path:
    return Path(os.environ.get("CLUSTERGRANTS_STATE_DIR", ROOT / ".local"))


def credentials_path(state: Path | None = None) -> Path:
    return (state or state_dir()) / "secrets" / "kafka-users.json"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600, in a 0700 folder), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp creates the file 0600
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class KafkaCredentials:
    """The passwords of one state folder: the admin, the controller link, and every principal."""

    path: Path
    passwords: dict[str, str] = field(default_factory=dict)
    portals: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> KafkaCredentials:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: the stack creates it when it starts its Kafka")
        data = json.loads(path.read_text())
        return cls(path, dict(data["passwords"]), list(data["portals"]))

    @classmethod
    def load_or_create(cls, path: Path) -> KafkaCredentials:
        """The folder's credentials; missing ones (a new folder, a principal new to the table) are generated."""
        store = cls.load(path) if path.exists() else cls(path, portals=list(DEV_PORTALS))
        for portal in DEV_PORTALS:
            if portal not in store.portals:
                store.portals.append(portal)
        if store._fill():
            store.save()
        return store

    def _fill(self) -> bool:
        missing = [name for name in (ADMIN, CONTROLLER, *self.principals()) if name not in self.passwords]
        for name in missing:
            self.passwords[name] = secrets.token_urlsafe(32)
        return bool(missing)

    def principals(self) -> tuple[str, ...]:
        return principals(self.portals)

    def users(self) -> dict[str, str]:
        """Every SCRAM user the broker must know (the admin and the table's principals)."""
        return {name: self.passwords[name] for name in (ADMIN, *self.principals())}

    def save(self) -> None:
        write_private(self.path, json.dumps({"passwords": self.passwords, "portals": sorted(self.portals)}, indent=1) + "\n")

    def add_portal(self, name: str) -> str:
        principal = portal_name(name)
        if principal not in self.portals:
            self.portals.append(principal)
        self._fill()
        self.save()
        return principal

    def remove_portal(self, name: str) -> str:
        principal = portal_name(name)
        if principal in DEV_PORTALS:
            raise ValueError(f"{principal} is one of the stack's own portals ({', '.join(DEV_PORTALS)}); it stays")
        if principal not in self.portals:
            raise KeyError(f"no portal {principal} in {self.path}")
        self.portals.remove(principal)
        self.passwords.pop(principal, None)
        self.save()
        return principal


# --- acting as a principal (tools and tests) ------------------------------------------------------


def available() -> bool:
    """Whether per-principal credentials are known (the stack started its own, authenticated Kafka)."""
    return bool(os.environ.get(CREDENTIALS_ENV)) and Path(os.environ[CREDENTIALS_ENV]).exists()


def principal_settings(principal: str, bootstrap: str | None = None) -> CommonSettings:
    """The settings a client acting as `principal` uses: the environment's broker, TLS and SASL
    mechanism, with that principal's name and password from the stack's credentials file. Without
    the file (a broker the stack did not start), the environment's own settings, whoever they name."""
    settings = CommonSettings()
    overrides: dict[str, Any] = {}
    if bootstrap is not None:
        overrides["kafka_bootstrap_servers"] = bootstrap
    if available():
        store = KafkaCredentials.load(Path(os.environ[CREDENTIALS_ENV]))
        if principal not in store.passwords:
            raise KeyError(f"no credentials for {principal!r} in {store.path}")
        protocol = settings.kafka_security_protocol
        overrides |= {
            "kafka_security_protocol": "SASL_SSL" if protocol in ("SSL", "SASL_SSL") else "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": principal,
            "kafka_sasl_password": SecretStr(store.passwords[principal]),
        }
    return settings.model_copy(update=overrides) if overrides else settings  # values of the settings' own types


def client_options(principal: str, bootstrap: str | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments (bootstrap_servers included) for a client acting as `principal`."""
    return settings_options(principal_settings(principal, bootstrap))


def principal_env(principal: str) -> dict[str, str]:
    """Environment variables that make a service process (or the CLI) authenticate as `principal`."""
    if not available():
        return {}
    settings = principal_settings(principal)
    assert settings.kafka_sasl_password is not None
    return {
        "KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.get_secret_value(),
    }


# --- the command ----------------------------------------------------------------------------------


def read_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value
    return values


def _running_stack(state: Path) -> dict[str, str] | None:
    """The connection settings of the stack running on this state folder (its stack.env), if any."""
    path = state / "stack.env"
    return read_dotenv(path) if path.exists() else None


async def _apply_portal(store: KafkaCredentials, principal: str, stack: dict[str, str], prefix: str, remove: bool) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from shared import kafka_admin

    admin_settings = CommonSettings(
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        # (ignore below) pydantic validates the str
        kafka_security_protocol=stack.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),  # type: ignore[arg-type]
        kafka_sasl_username=ADMIN,
        kafka_sasl_password=store.passwords[ADMIN],  # type: ignore[arg-type]  # pydantic makes it a SecretStr
        kafka_ssl_cafile=stack.get("KAFKA_SSL_CAFILE") or None,
    )
    admin = AIOKafkaAdminClient(**settings_options(admin_settings), request_timeout_ms=10000)
    await admin.start()
    try:
        if remove:
            await kafka_admin.revoke_principal(admin, principal)
            await kafka_admin.delete_users(admin, [principal])
        else:
            await kafka_admin.upsert_users(admin, {principal: store.passwords[principal]})
            await kafka_admin.create_acls(admin, kafka_admin.principal_bindings(principal, prefix))
    finally:
        await admin.close()


def _portal_env(principal: str, password: str, stack: dict[str, str] | None) -> str:
    lines = [
        f"# Kafka credentials of the agency portal {principal} (local stack). Keep private.",
        f"# It may publish to: {', '.join(t.value for t in writes(principal))} (with the stack's TOPIC_PREFIX).",
    ]
    if stack:
        lines.append(f"KAFKA_BOOTSTRAP_SERVERS={stack['KAFKA_BOOTSTRAP_SERVERS']}")
        lines.append(f"KAFKA_SECURITY_PROTOCOL={stack.get('KAFKA_SECURITY_PROTOCOL', 'SASL_PLAINTEXT')}")
        if stack.get("KAFKA_SSL_CAFILE"):
            lines.append(f"KAFKA_SSL_CAFILE={stack['KAFKA_SSL_CAFILE']}")
    lines += ["KAFKA_SASL_MECHANISM=SCRAM-SHA-512", f"KAFKA_SASL_USERNAME={principal}", f"KAFKA_SASL_PASSWORD={password}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-portal", help="create a portal principal: its password and its ACLs")
    add.add_argument("name", help="the portal's name (lower-case letters, digits, '-'); 'portal-' is prepended")
    remove = sub.add_parser("remove-portal", help="remove a portal: its credentials and every ACL it had")
    remove.add_argument("name")
    sub.add_parser("list", help="the principals of this state folder and what each may do")
    for command in (add, remove):
        command.add_argument("--topic-prefix", default=None, help="topic prefix of the ACLs (default: the running stack's)")
    args = parser.parse_args(argv)

    state = state_dir()
    store = KafkaCredentials.load_or_create(credentials_path(state))
    stack = _running_stack(state)
    try:
        if args.command == "list":
            for principal in store.principals():
                print(f"{principal}: {'; '.join(acl_lines(principal))}")
            return 0
        remove = args.command == "remove-portal"
        principal = store.remove_portal(args.name) if remove else store.add_portal(args.name)
    except (ValueError, KeyError) as error:
        print(f"kafka_users: {error.args[0]}", file=sys.stderr)
        return 2
    env_file = store.path.parent / f"{principal}.env"
    if remove:
        env_file.unlink(missing_ok=True)
    else:
        write_private(env_file, _portal_env(principal, store.passwords[principal], stack))
    if stack is None:
        print(f"{principal}: {'removed' if remove else 'added'}; the stack is not running: applied when it starts next")
    else:
        prefix = stack.get("TOPIC_PREFIX", "") if args.topic_prefix is None else args.topic_prefix
        asyncio.run(_apply_portal(store, principal, stack, prefix, remove))
        print(f"{principal}: {'removed from' if remove else 'added to'} the running broker {stack['KAFKA_BOOTSTRAP_SERVERS']}")
    if not remove:
        print(f"its connection settings (password included): {env_file} (mode 0600)")
        for line in acl_lines(principal):
            print(f"  may {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
