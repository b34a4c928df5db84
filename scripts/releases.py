"""The previous releases of edgesync, built from the commits releases.toml records.

    python scripts/releases.py previous        the newest release older than this code
    python scripts/releases.py tree [VERSION]  its source tree (git archive of its commit)
    python scripts/releases.py agent [VERSION] its agent installed in a virtualenv: the
                                               path of its `edgesync` command

Each prints one line. Trees and virtualenvs are made once, under
build/releases/VERSION/, and reused. A commit that is not in the clone (a
shallow one) is a one-line error, exit 2.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "releases"


class ReleaseError(Exception):
    pass


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def releases() -> list[dict]:
    return tomllib.loads((ROOT / "releases.toml").read_text())["release"]


def current() -> str:
    text = (ROOT / "src" / "edgesync" / "__init__.py").read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


def find(version: str | None) -> dict:
    """A recorded release; by default the newest one older than this code."""
    known = sorted(releases(), key=lambda r: _key(r["version"]))
    if version is None:
        older = [r for r in known if _key(r["version"]) < _key(current())]
        if not older:
            raise ReleaseError(f"releases.toml records no release older than {current()}")
        return older[-1]
    for release in known:
        if release["version"] == version:
            return release
    names = ", ".join(r["version"] for r in known)
    raise ReleaseError(f"release {version} is not in releases.toml (it records {names})")


def tree(release: dict) -> Path:
    """The release's sources, exported from its commit."""
    dest = BUILD / release["version"] / "tree"
    if (dest / "pyproject.toml").exists():
        return dest
    commit = release["commit"]
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True)  # fmt: skip
    if found.returncode != 0:
        raise ReleaseError(
            f"commit {commit[:12]} of release {release['version']} is not in this clone "
            f"(a shallow clone? run `git fetch --unshallow`)"
        )
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                             capture_output=True, check=True).stdout  # fmt: skip
    part = dest.with_name("tree.part")
    shutil.rmtree(part, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(part, filter="data")
    part.rename(dest)
    return dest


def agent(release: dict) -> Path:
    """The release's `edgesync` command, in a virtualenv of its own."""
    venv = BUILD / release["version"] / "venv"
    command = venv / "bin" / "edgesync"
    done = venv / ".complete"  # a virtualenv's scripts name its path: built in place
    if done.exists():
        return command
    src = tree(release)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(src)], check=True)
    done.touch()
    return command


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("previous", "tree", "agent") or len(argv) > 2:
        print("usage: releases.py previous | tree [VERSION] | agent [VERSION]", file=sys.stderr)
        return 2
    try:
        release = find(argv[1] if len(argv) > 1 else None)
        if argv[0] == "previous":
            print(release["version"])
        elif argv[0] == "tree":
            print(tree(release))
        else:
            print(agent(release))
    except ReleaseError as exc:
        print(f"releases.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
