"""The playbooks' housekeeping: roles/agent's prune.yml, run by the distribution's
Ansible on this machine against a release tree of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: agent
        tasks_from: prune.yml
"""


def prune(tmp_path: Path, root: Path, keep: int) -> subprocess.CompletedProcess:
    play = tmp_path / "prune.yml"
    play.write_text(PLAYBOOK)
    ansible = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(ansible), "-i", "localhost,", str(play), "-e", f"edgesync_root={root}",
         "-e", f"edgesync_releases_keep={keep}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def releases(root: Path, *names: str) -> None:
    """Releases installed in the order given, a minute apart."""
    for k, name in enumerate(names):
        venv = root / "releases" / name / "venv"
        venv.mkdir(parents=True)
        (venv / "bin").mkdir()
        stamp = 1_700_000_000 + 60 * k
        os.utime(venv.parent, (stamp, stamp))


@pytest.mark.parametrize(
    ("live", "kept"),
    [("0.4.0", {"0.4.0", "0.3.0"}),  # the live one and the one before it
     ("0.3.0", {"0.3.0", "0.4.0"})],  # rolled back: the newer one stays beside it
)  # fmt: skip
def test_old_releases_go_the_live_one_and_the_newest_other_stay(tmp_path, live, kept):
    root = tmp_path / "opt"
    releases(root, "0.1.0", "0.2.0", "0.3.0", "0.4.0")
    (root / "current").symlink_to(root / "releases" / live / "venv")
    res = prune(tmp_path, root, keep=2)
    assert res.returncode == 0, res.stdout[-2000:]
    assert {p.name for p in (root / "releases").iterdir()} == kept
    again = prune(tmp_path, root, keep=2)  # nothing left to do
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-2000:]


def test_nothing_goes_before_current_is_a_link(tmp_path):
    root = tmp_path / "opt"
    releases(root, "0.3.0", "0.4.0", "0.5.0")
    res = prune(tmp_path, root, keep=1)
    assert res.returncode == 0, res.stdout[-2000:]
    assert len(list((root / "releases").iterdir())) == 3
