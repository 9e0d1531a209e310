"""No tracked file names a path that exists on one machine only.

A clone elsewhere has no working copy under `work`, a user's home, or a Windows drive of the machine
that wrote the file: sources are cited by what they are (publisher, title, date, and the seed file
as `../shared/seeds/<name>`), files by their path relative to the repository. What is NOT a machine
path, and must not be reported:

* URLs (`https://example.org/work/x`): the path follows a host;
* the CloudEvents sources `/clustergrants/<service>` and HTTP routes (`/v1/applications`);
* paths every system has or that live inside the container image or the pod (`/etc/...`,
  `/usr/...`, `/opt/venv`, `/proc/...`, `/var/tmp/...`), which are where a program puts things,
  not where one machine happened to keep a file.

The example paths below are assembled at run time so that this file does not report itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Top-level directories where users, CI runners and sandboxes keep working copies and scratch files.
_MACHINE_ROOTS = (
    "work",
    "workspace",
    "workspaces",
    "home",
    "root",
    "tmp",
    "Users",
    "Volumes",
    "mnt",
    "media",
    "private",
    "builds",
    "var/folders",
    "run/user",
)
MACHINE_PATH = re.compile(
    # An absolute POSIX path under one of those roots, not preceded by anything that makes it part of
    # a URL, a relative path or a word (host names, "../x/tmp/", "~/", "a/tmp/").
    r"(?<![\w.:/~$%-])/(?:" + "|".join(re.escape(r) for r in _MACHINE_ROOTS) + r")/"
    # A file URL to any absolute path.
    r"|file://(?:localhost)?/"
    # A Windows drive path, with either separator (drive letter, colon, separator, a folder, separator).
    r"|(?<![\w\\/])[A-Za-z]:[\\/](?=[A-Za-z0-9_ .$-]+[\\/])"
    # A UNC share (two backslashes, server, backslash, share).
    r"|(?<![\w\\])\\\\[A-Za-z0-9_.-]+\\[A-Za-z0-9_$.-]+"
)


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of `text` that contains a machine path."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]


def _p(*parts: str) -> str:
    return "/".join(parts)


REPORTED = [
    _p("", "work", "shared", "seeds", "000_b8f1635a33d3043b.txt"),
    f"Source: {_p('', 'work', 'shared', 'seeds')}/ (000, 001 VLAIO)",
    f"reference: '{_p('', 'home', 'anna', 'clustergrants', 'pots.yaml')}'",
    f"# see {_p('', 'root', '.cache', 'x')}",
    f"written to {_p('', 'tmp', 'pytest-of-root', 'out.json')}",
    _p("", "Users", "anna", "src", "clustergrants", "README.md"),
    f"log: {_p('', 'var', 'folders', 'x1', 'T', 'run.log')}",
    "file://" + _p("", "etc", "hosts"),
    "C:" + "\\" + "Users" + "\\" + "anna" + "\\" + "repo",
    "D:" + "/data/" + "seeds/000.txt",
    "\\" + "\\" + "fileserver" + "\\" + "share" + "\\" + "seeds",
    f'Path("{_p("", "mnt", "data", "x")}")',
]
NOT_REPORTED = [
    "../shared/seeds/000_b8f1635a33d3043b.txt",
    "https://example.org" + _p("", "work", "x"),
    "http://127.0.0.1:28080" + _p("", "home", "x"),
    "ce_source: /clustergrants/budget",
    "POST /v1/applications",
    "mountPath: /etc/clustergrants/eligibility/",
    "COPY --from=build /opt/venv /opt/venv",
    'Path(f"/var/tmp/clustergrants-{tag}/postgres")',
    "tests/unit/test_no_machine_paths.py",
    "services/notify/templates/{language}.yaml",
    "~/.cache/clustergrants",
    'raise SystemExit(f"could not resolve:\\n{out}")',
    'text = f"programmes:\\n  - x"',
    "a ratio of 1:2",
]


@pytest.mark.parametrize("text", REPORTED)
def test_a_machine_path_is_reported(text: str) -> None:
    assert machine_paths(text), f"not reported: {text!r}"


@pytest.mark.parametrize("text", NOT_REPORTED)
def test_what_is_not_a_machine_path_is_not_reported(text: str) -> None:
    assert not machine_paths(text), f"reported, but not a machine path: {text!r}"


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout.decode(
        "utf-8"
    )
    files = [ROOT / name for name in listed.split("\0") if name]
    assert len(files) > 100, f"git ls-files listed only {len(files)} files: is this a checkout of the repository?"
    return files


def test_no_tracked_file_contains_a_path_of_one_machine() -> None:
    found: list[str] = []
    for path in tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}:{n}: {line[:160]}" for n, line in machine_paths(text)]
    assert not found, "paths of one machine (cite sources relative to the repository):\n" + "\n".join(found)
