"""Start the local infrastructure (Apache Kafka in KRaft mode, PostgreSQL, a mail sink), optionally the
four services, run a command against it all, and stop everything it started, by process id.

    python deploy/local/stack.py [--services] [--mail] [-- COMMAND ...]

Without a command it runs in the foreground until Ctrl-C. Kafka's jars come from Maven Central
(`deploy/local/kafka/pom.xml`) and are cached under the state folder (`.local/` by default, git
ignores it), so a second run starts in seconds. PostgreSQL comes from Debian's packages (installed
when missing) and runs as the project's own cluster on its own port and data folder.

If `KAFKA_BOOTSTRAP_SERVERS` or `DATABASE_URL` is already set, that server is used and nothing is
started for it. A previous run that crashed leaves pid files; the processes they name are stopped
(if still ours) before starting again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

KAFKA_VERSION = "4.1.1"
STATE = Path(os.environ.get("CLUSTERGRANTS_STATE_DIR", ROOT / ".local"))
KAFKA_PORT = int(os.environ.get("CLUSTERGRANTS_KAFKA_PORT", "29092"))
CONTROLLER_PORT = KAFKA_PORT + 1
PG_PORT = int(os.environ.get("CLUSTERGRANTS_PG_PORT", "25432"))
SMTP_PORT = int(os.environ.get("CLUSTERGRANTS_SMTP_PORT", "28025"))
HTTP_PORT = int(os.environ.get("INTAKE_HTTP_PORT", "28080"))
PG_USER = "clustergrants"
PG_DB = "clustergrants"
SERVICES = ("intake", "eligibility", "budget", "notify")


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


def wait_until(what: str, check, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
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


def postgres_datadir(owner: pwd.struct_passwd | None) -> Path:
    preferred = STATE / "postgres"
    if owner is None:
        return preferred
    STATE.mkdir(parents=True, exist_ok=True)
    check = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(STATE)], check=False)
    if check.returncode == 0:
        return preferred
    # The checkout sits in a folder the postgres user cannot enter (a 0700 temp dir, say).
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    return Path(f"/var/tmp/clustergrants-{tag}/postgres")  # noqa: S108  (owned by postgres, per checkout)


class Postgres:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = postgres_owner()
        self.datadir = postgres_datadir(self.owner)
        self.log = STATE / "logs" / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{PG_PORT}/{PG_DB}"

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

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
        if not port_free(PG_PORT):
            raise SystemExit(f"port {PG_PORT} is taken by another program: set CLUSTERGRANTS_PG_PORT or DATABASE_URL")
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
                f"port={PG_PORT}",
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            user=self.owner.pw_uid if self.owner else None,
            group=self.owner.pw_gid if self.owner else None,
            start_new_session=True,
        )
        wait_until("PostgreSQL", lambda: self._ready(bindir), 60, self.proc, self.log)
        self._create_database(bindir)
        say(f"PostgreSQL ready on 127.0.0.1:{PG_PORT} (pid {self.proc.pid}) in {time.monotonic() - started:.1f} s")

    def _ready(self, bindir: Path) -> bool:
        probe = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres"],
            check=False,
        )
        return probe.returncode == 0

    def _create_database(self, bindir: Path) -> None:
        psql = ["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres", "-tAq"]
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"], check=True, capture_output=True, text=True
        ).stdout.strip()
        if exists != "1":
            subprocess.run([*psql, "-c", f"CREATE DATABASE {PG_DB}"], check=True)

    def stop(self) -> None:
        if self.proc is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, exit cleanly.
            stop_pid(self.proc.pid, "PostgreSQL", signal.SIGINT)
            self.proc.wait(timeout=5)
            say("PostgreSQL stopped")
            self.proc = None


# --- Apache Kafka -------------------------------------------------------------------------------


class Kafka:
    def __init__(self) -> None:
        self.home = STATE / "kafka"
        self.libs = self.home / f"libs-{KAFKA_VERSION}"
        self.data = self.home / "data"
        self.pidfile = self.home / "kafka.pid"
        self.props = self.home / "server.properties"
        self.log = STATE / "logs" / "kafka.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{KAFKA_PORT}"

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

    def configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.props.write_text(
            (ROOT / "deploy/local/kafka/server.properties")
            .read_text()
            .replace("@KAFKA_PORT@", str(KAFKA_PORT))
            .replace("@CONTROLLER_PORT@", str(CONTROLLER_PORT))
            .replace("@LOG_DIRS@", str(self.data))
        )
        cluster_id_file = self.home / "cluster-id"
        if not cluster_id_file.exists():
            # 16 random bytes, URL-safe base64 without padding; never starting with '-'.
            import base64

            while True:
                cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
                if not cid.startswith("-"):
                    break
            cluster_id_file.write_text(cid)
        if not (self.data / "meta.properties").exists():
            subprocess.run(
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
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def start(self) -> None:
        started = time.monotonic()
        stop_stale(self.pidfile, "kafka.Kafka", "Kafka")
        self.resolve_jars()
        self.configure()
        for port in (KAFKA_PORT, CONTROLLER_PORT):
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
                f"-Dkafka.logs.dir={STATE / 'logs'}",
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
        wait_until("Kafka", lambda: port_open(KAFKA_PORT), 90, self.proc, self.log)
        wait_until("Kafka metadata", self._ready, 60, self.proc, self.log)
        say(f"Kafka {KAFKA_VERSION} ready on {self.bootstrap} (pid {self.proc.pid}) in {time.monotonic() - started:.1f} s")

    def _ready(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
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


def prepare(env: dict[str, str]) -> None:
    """Apply migrations and create topics (both idempotent)."""
    python = sys.executable
    subprocess.run([python, "-m", "shared.migrate"], cwd=ROOT, env=env, check=True)
    subprocess.run([python, "-m", "shared.kafka_admin", "create-topics"], cwd=ROOT, env=env, check=True)


@contextlib.contextmanager
def infrastructure(mail: bool) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    started: list[Postgres | Kafka | Child] = []
    stop_stale_children()
    try:
        if "DATABASE_URL" not in env:
            pg = Postgres()
            started.append(pg)
            pg.start()
            env["DATABASE_URL"] = pg.url
        else:
            say("DATABASE_URL is set: using that PostgreSQL, starting none")
        if "KAFKA_BOOTSTRAP_SERVERS" not in env:
            kafka = Kafka()
            started.append(kafka)
            kafka.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap
        else:
            say("KAFKA_BOOTSTRAP_SERVERS is set: using that Kafka, starting none")
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
        yield env
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception as error:  # keep stopping the others
                say(f"could not stop {type(thing).__name__}: {error}")


def start_services(env: dict[str, str], foreground: bool) -> list[Child]:
    env = {**env, "INTAKE_HTTP_PORT": str(HTTP_PORT)}
    # Local stand-ins for what an agency decides (see the files: not figures from any document).
    env.setdefault("ELIGIBILITY_OPERATOR_PARAMETERS_FILE", str(ROOT / "deploy/local/operator-parameters.yaml"))
    env.setdefault("BUDGET_POTS_FILE", str(ROOT / "deploy/local/budget-pots.yaml"))
    # notify's recipient-reference key: generated once per checkout, kept in the state folder.
    ref_key = STATE / "notify-recipient-ref.key"
    if not ref_key.exists():
        ref_key.parent.mkdir(parents=True, exist_ok=True)
        ref_key.write_text(secrets.token_hex(32))
        ref_key.chmod(0o600)
    env.setdefault("NOTIFY_RECIPIENT_REF_KEY", ref_key.read_text().strip())
    if foreground:
        env.setdefault("LOG_FORMAT", "console")
    # Each service's /healthz, /readyz and /metrics on its own port: 28081 intake ... 28084 notify.
    children = [
        Child(name, [sys.executable, "-m", f"services.{name}"], {**env, "OPS_HTTP_PORT": str(HTTP_PORT + 1 + i)}, foreground)
        for i, name in enumerate(SERVICES)
    ]
    wait_until("intake HTTP", lambda: port_open(HTTP_PORT), 60, children[0].proc, children[0].log)
    say(
        f"services started: {', '.join(f'{c.name} (pid {c.proc.pid})' for c in children)}; "
        f"HTTP intake on http://127.0.0.1:{HTTP_PORT} (OpenAPI at /docs); health and metrics on ports "
        f"{HTTP_PORT + 1}-{HTTP_PORT + len(SERVICES)} (/healthz, /readyz, /metrics)"
    )
    return children


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", action="store_true", help="also run the four services")
    parser.add_argument("--mail", action="store_true", help="also run a local SMTP mail sink (aiosmtpd)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run against the stack (after --)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    children: list[Child] = []
    code = 0
    try:
        with infrastructure(mail=args.mail) as env:
            prepare(env)
            try:
                if args.services:
                    children = start_services(env, foreground=not command)
                    env["INTAKE_URL"] = f"http://127.0.0.1:{HTTP_PORT}"
                if command:
                    job = subprocess.Popen(command, cwd=ROOT, env=env)
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
    except Stopped as why:
        say(f"{why}: stopped everything this run started")
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
