"""Start the local infrastructure (Apache Kafka in KRaft mode, PostgreSQL, a mail sink), optionally the
services, run a command against it all, and stop everything it started, by process id.

    python deploy/local/stack.py [--services] [--mail] [--tls] [-- COMMAND ...]

Without a command it runs in the foreground until Ctrl-C. Kafka's jars come from Maven Central
(`deploy/local/kafka/pom.xml`) and are cached under the state folder (`.local/` by default, git
ignores it), so a second run starts in seconds. PostgreSQL comes from Debian's packages (installed
when missing) and runs as the project's own cluster on its own port and data folder.

Kafka authenticates every client (SASL/SCRAM-SHA-512) and authorizes it by the ACLs of
`shared/acl.py`: the stack creates the users (the admin with the storage tool when it formats,
everyone through the Admin API at each start) and makes the broker's ACLs exactly the table's, both
idempotently. Passwords are generated once per state folder (`<state>/secrets/`, 0600; see
deploy/local/kafka_users.py). Each service runs as its own principal, the command (`-- ...`) gets
the `operator`'s credentials and `CLUSTERGRANTS_KAFKA_CREDENTIALS` (the credentials file, for tools
and tests that act as another principal). With `--tls` the client listener is SASL_SSL and
PostgreSQL accepts TLS connections only, with certificates from a CA the stack generates
(deploy/local/tls.py).

While it runs, `<state>/stack.env` (0600) holds the connection settings the operator's CLI uses
(the `operator` principal); it is removed on exit. URLs and ports are printed at start; passwords
never are.

If `KAFKA_BOOTSTRAP_SERVERS` or `DATABASE_URL` is already set, that server is used and nothing is
started for it (its credentials are then yours to set). A previous run that crashed leaves pid
files; the processes they name are stopped (if still ours) before starting again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from deploy.local.kafka_users import (  # noqa: E402
    CONTROLLER,
    CREDENTIALS_ENV,
    KafkaCredentials,
    credentials_path,
    write_private,
)
from deploy.local.tls import TlsFiles  # noqa: E402
from shared.acl import ADMIN, AGENCY_READER, OPERATOR  # noqa: E402
from shared.topics import SERVICES, Topic, topic_name  # noqa: E402

KAFKA_VERSION = "4.1.1"
STATE = Path(os.environ.get("CLUSTERGRANTS_STATE_DIR", ROOT / ".local"))
KAFKA_PORT = int(os.environ.get("CLUSTERGRANTS_KAFKA_PORT", "29092"))
CONTROLLER_PORT = KAFKA_PORT + 1
PG_PORT = int(os.environ.get("CLUSTERGRANTS_PG_PORT", "25432"))
SMTP_PORT = int(os.environ.get("CLUSTERGRANTS_SMTP_PORT", "28025"))
HTTP_PORT = int(os.environ.get("INTAKE_HTTP_PORT", "28080"))
PG_USER = "clustergrants"
PG_DB = "clustergrants"


def say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


class Stopped(Exception):
    """Raised in the main thread by SIGINT/SIGTERM so that `finally` blocks stop what was started."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not interrupt the clean-up the first one started.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def port_open(port: int) -> bool:
    """Something listens on 127.0.0.1:`port`.

    A connection to a port of the ephemeral range that nobody listens on can, rarely, connect to
    itself (TCP simultaneous open: the kernel picked that very port as the source). That is no
    listener, and the socket must not linger either, or the server we are about to start cannot bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return False
        if s.getsockname() == s.getpeername():
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, no TIME_WAIT
            return False
        return True


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"{what} exited with code {proc.returncode} while starting.\n{tail}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} was not ready after {timeout:.0f} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_pid(pid: int, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one process by id: `sig`, wait, then SIGKILL."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0 if alive(pid) else pid
        if done == pid or not alive(pid):
            return
        time.sleep(0.1)
    say(f"{name} (pid {pid}) did not stop in {timeout:.0f} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_stale(pidfile: Path, marker: str, name: str, sig: int = signal.SIGTERM) -> None:
    """A crashed earlier run may have left a process: stop it if its command line is still ours."""
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text().split()[0])
    except (ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return
    if alive(pid) and marker in cmdline(pid):
        say(f"stopping {name} left over from an earlier run (pid {pid})")
        stop_pid(pid, name, sig)
    pidfile.unlink(missing_ok=True)


def stop_stale_children() -> None:
    """Services and the mail sink of a run that was killed: first, as they hold database connections."""
    for pidfile in sorted((STATE / "pids").glob("*.pid")):
        stop_stale(pidfile, "-m ", pidfile.stem)


def port_free(port: int, wait_s: float = 10) -> bool:
    """True once nothing listens on `port` (a process just stopped may need a moment)."""
    deadline = time.monotonic() + wait_s
    while port_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    if os.geteuid() != 0:
        raise SystemExit("PostgreSQL is not installed: run `sudo apt-get install -y postgresql` or set DATABASE_URL")
    say("PostgreSQL is missing: installing Debian's postgresql package")
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql", "postgresql-contrib"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )
    return postgres_bindir()


def postgres_owner() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as the Debian `postgres` user."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def postgres_datadir(owner: pwd.struct_passwd | None, state: Path = STATE) -> Path:
    preferred = state / "postgres"
    if owner is None:
        return preferred
    state.mkdir(parents=True, exist_ok=True)
    check = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(state)], check=False)
    if check.returncode == 0:
        return preferred
    # The checkout sits in a folder the postgres user cannot enter (a 0700 temp dir, say).
    # Per state folder (the default folder keeps the name it had when the tag was per checkout).
    tag = hashlib.sha256(str(ROOT if state == ROOT / ".local" else state.resolve()).encode()).hexdigest()[:10]
    return Path(f"/var/tmp/clustergrants-{tag}/postgres")  # noqa: S108  (owned by postgres, per state folder)


class Postgres:
    """The project's own PostgreSQL cluster on `port`; with `tls`, TLS connections only (hostssl)."""

    def __init__(self, state: Path = STATE, port: int = PG_PORT, tls: TlsFiles | None = None) -> None:
        self.state = state
        self.port = port
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = postgres_owner()
        self.datadir = postgres_datadir(self.owner, state)
        self.log = state / "logs" / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DB}"

    def client_env(self) -> dict[str, str]:
        """The settings a client of this server uses (shared/settings.py)."""
        env = {"DATABASE_URL": self.url}
        if self.tls is not None:
            env |= {"DATABASE_SSL_MODE": "verify-full", "DATABASE_SSL_ROOT_CERT": str(self.tls.ca_cert)}
        return env

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def _tls_options(self) -> list[str]:
        """Copies of the server's pair in the data folder (PostgreSQL wants to own its key, 0600) and an
        hba file that refuses every TCP connection without TLS."""
        if self.tls is None:
            return []
        cert, key, hba = self.datadir / "server.crt", self.datadir / "server.key", self.datadir / "pg_hba.tls.conf"
        cert.write_bytes(self.tls.server_cert.read_bytes())
        key.touch(mode=0o600)
        os.chmod(key, 0o600)
        key.write_bytes(self.tls.server_key.read_bytes())
        hba.write_text(
            "# written by deploy/local/stack.py --tls: TCP only over TLS\n"
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
        )
        for path in (cert, key, hba):
            self._chown(path)
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}", "-c", f"hba_file={hba}"]

    def start(self) -> None:
        started = time.monotonic()
        bindir = postgres_bindir()
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.datadir.parent)
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(PermissionError):  # SIGINT: fast shutdown, clients or not
                stop_stale(pidfile, str(self.datadir), "PostgreSQL", signal.SIGINT)
        if not (self.datadir / "PG_VERSION").exists():
            if self.datadir.exists():
                shutil.rmtree(self.datadir)
            self.datadir.mkdir(mode=0o700)
            self._chown(self.datadir)
            say(f"initialising a PostgreSQL cluster in {self.datadir}")
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.datadir), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-locale"],
                check=True,
                stdout=subprocess.DEVNULL,
                cwd="/",  # the postgres user may not be able to enter the checkout
                user=self.owner.pw_uid if self.owner else None,
                group=self.owner.pw_gid if self.owner else None,
            )
        if not port_free(self.port):
            raise SystemExit(f"port {self.port} is taken by another program: set CLUSTERGRANTS_PG_PORT or DATABASE_URL")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        log = self.log.open("ab")
        # fsync off: a test cluster need not survive an OS crash; a killed postgres still recovers
        # from its WAL, so commits stay durable across process crashes (the chaos run relies on it).
        self.proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-c",
                f"port={self.port}",
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.datadir}",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "log_min_messages=warning",
                *self._tls_options(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            user=self.owner.pw_uid if self.owner else None,
            group=self.owner.pw_gid if self.owner else None,
            start_new_session=True,
        )
        wait_until("PostgreSQL", lambda: self._ready(bindir), 60, self.proc, self.log)
        self._create_database()
        mode = " (TLS only)" if self.tls else ""
        say(f"PostgreSQL ready on 127.0.0.1:{self.port}{mode} (pid {self.proc.pid}) in {time.monotonic() - started:.1f} s")

    def _ready(self, bindir: Path) -> bool:
        probe = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", "postgres"],
            check=False,
        )
        return probe.returncode == 0

    def _create_database(self) -> None:
        psql = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", "postgres", "-tAq"]
        env = {**os.environ, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(self.tls.ca_cert)} if self.tls else None
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        if exists != "1":
            subprocess.run([*psql, "-c", f"CREATE DATABASE {PG_DB}"], check=True, env=env)

    def stop(self) -> None:
        if self.proc is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, exit cleanly.
            stop_pid(self.proc.pid, "PostgreSQL", signal.SIGINT)
            self.proc.wait(timeout=5)
            say("PostgreSQL stopped")
            self.proc = None


# --- Apache Kafka -------------------------------------------------------------------------------


class Kafka:
    """One KRaft node on `port` (controller on `port + 1`) that authenticates and authorizes everyone.

    Its users and ACLs come from shared/acl.py; their passwords from the state folder's credentials
    file (created on first use). With `tls`, the client listener is SASL_SSL.
    """

    def __init__(
        self,
        state: Path = STATE,
        port: int = KAFKA_PORT,
        tls: TlsFiles | None = None,
        topic_prefix: str | None = None,
        libs: Path | None = None,
    ) -> None:
        """`libs`: Kafka's jars resolved elsewhere (another state folder's cache), read-only."""
        self.state = state
        self.port = port
        self.controller_port = port + 1
        self.tls = tls
        self.topic_prefix = os.environ.get("TOPIC_PREFIX", "") if topic_prefix is None else topic_prefix
        self.home = state / "kafka"
        self.libs = libs or self.home / f"libs-{KAFKA_VERSION}"
        self.data = self.home / "data"
        self.pidfile = self.home / "kafka.pid"
        self.props = self.home / "server.properties"
        self.formatted = self.home / "formatted-with-scram"
        self.log = state / "logs" / "kafka.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.credentials: KafkaCredentials | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    def client_env(self, principal: str | None = None) -> dict[str, str]:
        """The settings (shared/settings.py) of a client of this broker; as `principal` if given."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": self.protocol,
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            CREDENTIALS_ENV: str(credentials_path(self.state)),
        }
        if self.tls:
            env["KAFKA_SSL_CAFILE"] = str(self.tls.ca_cert)
        if principal is not None:
            assert self.credentials is not None, "start() first"
            env |= {"KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD": self.credentials.passwords[principal]}
        return env

    def options(self, principal: str = ADMIN) -> dict[str, Any]:
        """aiokafka keyword arguments of a client of this broker acting as `principal`."""
        from shared.kafka_security import client_options
        from shared.settings import CommonSettings

        env = self.client_env(principal)
        return client_options(
            CommonSettings(
                kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                kafka_security_protocol=env["KAFKA_SECURITY_PROTOCOL"],  # type: ignore[arg-type]  # pydantic validates the str
                kafka_sasl_username=principal,
                kafka_sasl_password=env["KAFKA_SASL_PASSWORD"],  # type: ignore[arg-type]  # pydantic makes it a SecretStr
                kafka_ssl_cafile=env.get("KAFKA_SSL_CAFILE"),
            )
        )

    def resolve_jars(self) -> None:
        if (self.libs / ".complete").exists():
            return
        if shutil.which("mvn") is None:
            raise SystemExit("Maven (mvn) is needed to fetch Kafka's jars from Maven Central: apt-get install maven")
        say(f"resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only)")
        staging = self.home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        resolved = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(ROOT / "deploy/local/kafka/pom.xml"),
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if resolved.returncode != 0:  # Maven's own words only when they matter (quiet mode still emits ANSI resets)
            raise SystemExit(f"Maven could not resolve Kafka's jars:\n{resolved.stdout}{resolved.stderr}")
        (staging / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)

    def _properties(self, store: KafkaCredentials) -> str:
        text = (
            (ROOT / "deploy/local/kafka/server.properties")
            .read_text()
            .replace("@KAFKA_PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
            .replace("@LOG_DIRS@", str(self.data))
            .replace("@CLIENT_PROTOCOL@", self.protocol)
            .replace("@ADMIN_PASSWORD@", store.passwords[ADMIN])
            .replace("@CONTROLLER_PASSWORD@", store.passwords[CONTROLLER])
        )
        if self.tls:
            # One PEM file with the key and the chain (Kafka's PEM key store); the CA for the broker's
            # own client side (inter-broker traffic goes over the client listener).
            keystore = self.home / "keystore.pem"
            write_private(keystore, self.tls.server_key.read_text() + self.tls.server_cert.read_text())
            text += (
                "\n# TLS on the client listener (deploy/local/stack.py --tls)\n"
                f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n"
                f"ssl.truststore.type=PEM\nssl.truststore.location={self.tls.ca_cert}\n"
            )
        return text

    def configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        path = credentials_path(self.state)
        had_credentials = path.exists()
        store = self.credentials = KafkaCredentials.load_or_create(path)
        write_private(self.props, self._properties(store))
        cluster_id_file = self.home / "cluster-id"
        if not cluster_id_file.exists():
            # 16 random bytes, URL-safe base64 without padding; never starting with '-'.
            import base64

            while True:
                cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
                if not cid.startswith("-"):
                    break
            cluster_id_file.write_text(cid)
        if (self.data / "meta.properties").exists() and not (self.formatted.exists() and had_credentials):
            # Formatted before the broker authenticated, or its admin's password is gone: nobody could
            # administer it. Local data only: start it afresh.
            say(f"Kafka's data in {self.data} has no admin user this stack knows: formatting it afresh")
            shutil.rmtree(self.data)
            self.formatted.unlink(missing_ok=True)
        if not (self.data / "meta.properties").exists():
            # The admin exists from the first start (KIP-900); everyone else is created through the
            # Admin API once the broker runs (secure()), so that a later principal is created the same way.
            formatted = subprocess.run(
                [
                    "java",
                    "-cp",
                    f"{self.libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id_file.read_text().strip(),
                    "-c",
                    str(self.props),
                    "--ignore-formatted",
                    "--add-scram",
                    f"SCRAM-SHA-512=[name={ADMIN},password={store.passwords[ADMIN]}]",
                ],
                check=False,  # not check=True: its error would print the command line, password included
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if formatted.returncode != 0:
                raise SystemExit(f"Kafka's storage tool could not format {self.data}:\n{formatted.stderr[-2000:]}")
            self.formatted.write_text(f"SCRAM-SHA-512 user {ADMIN}\n")

    def start(self) -> None:
        started = time.monotonic()
        stop_stale(self.pidfile, "kafka.Kafka", "Kafka")
        self.resolve_jars()
        self.configure()
        for port in (self.port, self.controller_port):
            if not port_free(port):
                raise SystemExit(
                    f"port {port} is taken by another program: set CLUSTERGRANTS_KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS"
                )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                "java",
                "-Xms256m",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={ROOT / 'deploy/local/kafka/log4j2.yaml'}",
                f"-Dkafka.logs.dir={self.state / 'logs'}",
                "-cp",
                f"{self.libs}/*",
                "kafka.Kafka",
                str(self.props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pidfile.write_text(str(self.proc.pid))
        wait_until("Kafka", lambda: port_open(self.port), 90, self.proc, self.log)
        wait_until("Kafka metadata", self._ready, 60, self.proc, self.log)
        self.secure()
        say(
            f"Kafka {KAFKA_VERSION} ready on {self.bootstrap} ({self.protocol}, SCRAM-SHA-512; controller "
            f"{self.controller_port}, SASL PLAIN) (pid {self.proc.pid}) in {time.monotonic() - started:.1f} s"
        )

    def _ready(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(**self.options(), request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return True
            except Exception:
                return False
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()

        return asyncio.run(probe())

    def secure(self) -> None:
        """Every principal's SCRAM credential (an upsert) and exactly the table's ACLs: for this prefix,
        and for every other prefix the broker has ACLs of (earlier test runs), so that no grant the
        table does not make survives a start."""
        from aiokafka.admin import AIOKafkaAdminClient

        from shared import kafka_admin

        store = self.credentials
        assert store is not None

        async def apply() -> dict[str, int]:
            admin = AIOKafkaAdminClient(**self.options(), request_timeout_ms=15000)
            await admin.start()
            try:
                await kafka_admin.upsert_users(admin, store.users())
                changes = await kafka_admin.sync_acls(admin, store.portals, self.topic_prefix, every_prefix=True)
            finally:
                await admin.close()
            await kafka_admin.wait_until_authorized(
                self.options(AGENCY_READER), topic_name(Topic.ELIGIBILITY_DECIDED, self.topic_prefix)
            )
            return changes

        changes = asyncio.run(apply())
        say(
            f"Kafka users: {', '.join(store.principals())} (+ {ADMIN}); ACLs of shared/acl.py: "
            f"{changes['created']} created, {changes['deleted']} removed, {changes['kept']} unchanged"
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, "Kafka", signal.SIGTERM, timeout=30)
            self.proc.wait(timeout=5)
            self.pidfile.unlink(missing_ok=True)
            say("Kafka stopped")
            self.proc = None


# --- processes of the project ---------------------------------------------------------------------


class Child:
    """A process of ours whose output is either prefixed onto our stderr or written to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], foreground: bool) -> None:
        self.name = name
        self.log = STATE / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # A run that was killed leaves its children running: stop them (if still ours) first.
        self.pidfile = STATE / "pids" / f"{name}.pid"
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        stop_stale(self.pidfile, " ".join(argv[1:]), name)
        out = subprocess.PIPE if foreground else self.log.open("ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text(str(self.proc.pid))
        if foreground:
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            sys.stderr.write(f"{self.name:<11} | {line.decode(errors='replace')}")
            sys.stderr.flush()

    def stop(self) -> None:
        stop_pid(self.proc.pid, self.name, signal.SIGTERM, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.pidfile.unlink(missing_ok=True)


@dataclass
class Running:
    """What `infrastructure` started (None: the environment named a server of its own)."""

    env: dict[str, str]
    kafka: Kafka | None = None
    postgres: Postgres | None = None

    def as_principal(self, principal: str) -> dict[str, str]:
        """`env` with the Kafka credentials of `principal` (unchanged when Kafka is not ours)."""
        return {**self.env, **self.kafka.client_env(principal)} if self.kafka else dict(self.env)


def prepare(env: dict[str, str]) -> None:
    """Apply migrations and create topics (both idempotent); `env` must name a principal that may create topics."""
    python = sys.executable
    subprocess.run([python, "-m", "shared.migrate"], cwd=ROOT, env=env, check=True)
    subprocess.run([python, "-m", "shared.kafka_admin", "create-topics"], cwd=ROOT, env=env, check=True)


@contextlib.contextmanager
def infrastructure(mail: bool, tls: bool = False) -> Iterator[Running]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    started: list[Postgres | Kafka | Child] = []
    stop_stale_children()
    running = Running(env)
    files = None
    if tls:
        from deploy.local import tls as local_tls

        files = local_tls.ensure(STATE / "tls")
        say(f"TLS: CA {files.ca_cert.relative_to(ROOT) if files.ca_cert.is_relative_to(ROOT) else files.ca_cert}")
    try:
        if "DATABASE_URL" not in env:
            pg = running.postgres = Postgres(tls=files)
            started.append(pg)
            pg.start()
            env |= pg.client_env()
        else:
            say("DATABASE_URL is set: using that PostgreSQL, starting none")
        if "KAFKA_BOOTSTRAP_SERVERS" not in env:
            kafka = running.kafka = Kafka(tls=files)
            started.append(kafka)
            kafka.start()
            env |= kafka.client_env()
        else:
            say("KAFKA_BOOTSTRAP_SERVERS is set: using that Kafka (and its credentials), starting none")
        if mail and "SMTP_HOST" not in env:
            maildir = STATE / "mail"
            for sub in ("tmp", "new", "cur"):  # a Maildir
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            sink = Child(
                "mail-sink",
                [
                    sys.executable,
                    "-m",
                    "aiosmtpd",
                    "-n",
                    "-l",
                    f"127.0.0.1:{SMTP_PORT}",
                    "-c",
                    "aiosmtpd.handlers.Mailbox",
                    str(maildir),
                ],
                env,
                foreground=False,
            )
            started.append(sink)
            wait_until("mail sink", lambda: port_open(SMTP_PORT), 20, sink.proc, sink.log)
            env["SMTP_HOST"], env["SMTP_PORT"] = "127.0.0.1", str(SMTP_PORT)
            say(f"mail sink (aiosmtpd) on 127.0.0.1:{SMTP_PORT} writes to {maildir}")
        yield running
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception as error:  # keep stopping the others
                say(f"could not stop {type(thing).__name__}: {error}")


def start_services(running: Running, foreground: bool) -> list[Child]:
    # Local stand-ins for what an agency decides (see the files: not figures from any document).
    # notify's recipient-reference key: generated once per checkout, kept in the state folder.
    ref_key = STATE / "notify-recipient-ref.key"
    if not ref_key.exists():
        ref_key.parent.mkdir(parents=True, exist_ok=True)
        ref_key.write_text(secrets.token_hex(32))
        ref_key.chmod(0o600)
    base = {
        # Local stand-ins for what an agency decides (see the files: not figures from any document).
        "ELIGIBILITY_OPERATOR_PARAMETERS_FILE": str(ROOT / "deploy/local/operator-parameters.yaml"),
        "BUDGET_POTS_FILE": str(ROOT / "deploy/local/budget-pots.yaml"),
        "NOTIFY_RECIPIENT_REF_KEY": ref_key.read_text().strip(),
        **({"LOG_FORMAT": "console"} if foreground else {}),
    }
    # Each service's /healthz, /readyz and /metrics on its own port: 28081 intake ... 28085 opendata;
    # each as its own Kafka principal.
    children = []
    for i, name in enumerate(SERVICES):
        # The environment's own choices win over the local defaults in `base`.
        env = {**base, **running.as_principal(name), "INTAKE_HTTP_PORT": str(HTTP_PORT), "OPS_HTTP_PORT": str(HTTP_PORT + 1 + i)}
        children.append(Child(name, [sys.executable, "-m", f"services.{name}"], env, foreground))
    wait_until("intake HTTP", lambda: port_open(HTTP_PORT), 60, children[0].proc, children[0].log)
    say(
        f"services started: {', '.join(f'{c.name} (pid {c.proc.pid})' for c in children)}; "
        f"HTTP intake on http://127.0.0.1:{HTTP_PORT} (OpenAPI at /docs); health and metrics on ports "
        f"{HTTP_PORT + 1}-{HTTP_PORT + len(SERVICES)} (/healthz, /readyz, /metrics)"
    )
    return children


# --- the connection file of the operator's command line -------------------------------------------

STACK_ENV = STATE / "stack.env"
STACK_ENV_KEYS = (
    "DATABASE_URL",
    "DATABASE_SSL_MODE",
    "DATABASE_SSL_ROOT_CERT",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "INTAKE_URL",
    "INTAKE_TOKEN",
    "TOPIC_PREFIX",
)


def write_stack_env(env: dict[str, str], path: Path = STACK_ENV) -> None:
    """`KEY=VALUE` lines (0600) of what the operator's CLI needs: the stack's servers as `operator`."""
    lines = [
        "# Written by deploy/local/stack.py while it runs; removed when it stops. Keep private (a password).",
        *(f"{key}={env[key]}" for key in STACK_ENV_KEYS if env.get(key)),
    ]
    write_private(path, "\n".join(lines) + "\n")


def announce(env: dict[str, str], services: bool) -> None:
    """The URLs and ports of this run (never a password)."""
    parts = [f"PostgreSQL {env.get('DATABASE_URL', '?')}"]
    if env.get("DATABASE_SSL_MODE"):
        parts[-1] += f" (sslmode {env['DATABASE_SSL_MODE']})"
    parts.append(f"Kafka {env.get('KAFKA_BOOTSTRAP_SERVERS', '?')} ({env.get('KAFKA_SECURITY_PROTOCOL', 'PLAINTEXT')})")
    if services:
        parts.append(f"intake {env['INTAKE_URL']} (bearer token: INTAKE_TOKEN in the file below)")
    if env.get("TOPIC_PREFIX"):
        parts.append(f"topic prefix {env['TOPIC_PREFIX']!r}")
    shown = STACK_ENV.relative_to(ROOT) if STACK_ENV.is_relative_to(ROOT) else STACK_ENV
    say(f"{'; '.join(parts)}. Connection settings of the `{OPERATOR}` principal for the CLI: {shown} (mode 0600)")


def hold_state_lock(state: Path = STATE) -> TextIO:
    """One stack per state folder: a second run would take the first's PostgreSQL and Kafka for left-overs
    of a crashed run and stop them. The lock (flock) goes with the process, however it ends."""
    state.mkdir(parents=True, exist_ok=True)
    handle = (state / "stack.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        raise SystemExit(
            f"another stack runs from this state folder ({state.name}, pid {holder}): stop it first, "
            "or give this run its own folder and ports (CLUSTERGRANTS_STATE_DIR, CLUSTERGRANTS_KAFKA_PORT, "
            "CLUSTERGRANTS_PG_PORT)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", action="store_true", help="also run the services (shared.topics.SERVICES)")
    parser.add_argument("--mail", action="store_true", help="also run a local SMTP mail sink (aiosmtpd)")
    parser.add_argument("--tls", action="store_true", help="Kafka over SASL_SSL and PostgreSQL over TLS only (a local CA)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run against the stack (after --)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    _lock = hold_state_lock()  # held until this process ends
    children: list[Child] = []
    code = 0
    try:
        with infrastructure(mail=args.mail, tls=args.tls) as running:
            env = running.env
            prepare(running.as_principal(ADMIN))
            env["INTAKE_URL"] = f"http://127.0.0.1:{HTTP_PORT}"
            env["INTAKE_TOKEN"] = env.get("INTAKE_API_TOKENS", "dev-token").split(",")[0]
            operator = running.as_principal(OPERATOR)
            try:
                write_stack_env(operator)
                announce(operator, args.services)
                if args.services:
                    children = start_services(running, foreground=not command)
                if command:
                    job = subprocess.Popen(command, cwd=ROOT, env=operator)
                    try:
                        code = job.wait()
                    finally:
                        if job.poll() is None:
                            stop_pid(job.pid, "command", signal.SIGTERM, timeout=20)
                else:
                    say("running; press Ctrl-C to stop everything")
                    while all(c.proc.poll() is None for c in children):
                        time.sleep(0.5)
                    dead = [c.name for c in children if c.proc.poll() is not None]
                    say(f"a service exited ({', '.join(dead)}): stopping everything")
                    code = 1
            finally:
                for child in reversed(children):
                    child.stop()
                STACK_ENV.unlink(missing_ok=True)
    except Stopped as why:
        say(f"{why}: stopped everything this run started")
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
