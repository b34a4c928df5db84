"""Push and pull over a real sshd on loopback, the caller named by its key."""

import json
import re
import shutil
import subprocess
import time

import pytest
from farm import Farm

from edgesync.localsshd import keygen


@pytest.fixture
def pair(tmp_path, redis_server, sshd):
    """EDGE01 (farm a) and MASTER01; EDGE01 reaches MASTER01 over ssh."""
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url,
                {"MASTER01": ("master", None, ()), "EDGE01": ("edge", "a", ())})  # fmt: skip
    farm.over_ssh(sshd, "EDGE01", "MASTER01")
    farm.ssh_port = sshd.port
    yield farm
    farm.close()


def test_pull_and_push_work_over_ssh(pair):
    master = pair.store("MASTER01")
    made = master.put("pages", {"section": "s", "title": "from the master"})
    report = pair.sync("EDGE01", "pull", "MASTER01")
    assert report["received"] == 1 and report["applied"] == 1
    assert pair.store("EDGE01").get("pages", made["id"])["title"] == "from the master"
    # The master may push to the edge (over its local: link in this farm).
    pair.put("MASTER01", title="second")
    assert pair.sync("MASTER01", "push", "EDGE01")["applied"] == 1
    assert pair.store("EDGE01").digest() == master.digest()


def test_an_edge_pushing_to_the_master_over_ssh_is_refused(pair):
    pair.put("EDGE01", title="mine")
    res = pair.cli("EDGE01", "push", "MASTER01")
    assert res.returncode == 3 and res.stderr.startswith("refused:")
    # Even when the edge's own config lets it try, the master's view counts.
    cfg = pair.config_path("EDGE01")
    text = re.sub(
        r'(\[peers\.MASTER01\]\nurl = "[^"]+"\n)role = "master"',
        r'\1role = "edge"\nfarm = "a"',
        cfg.read_text(),
    )
    assert 'farm = "a"\n' in text.split("[peers.MASTER01]")[1]
    cfg.write_text(text)
    res = pair.cli("EDGE01", "push", "MASTER01")
    assert res.returncode == 3 and res.stderr.startswith("refused:"), res.stderr
    assert "own farm" in res.stderr
    assert pair.store("MASTER01").rows("pages") == 0
    assert pair.store("MASTER01").status()["refusals"]["count"] == 1


def test_a_key_that_is_not_authorized_is_refused(pair, tmp_path):
    keygen(tmp_path / "stranger")
    shutil.copy(tmp_path / "stranger", tmp_path / "edge01" / "id_ed25519")
    res = pair.cli("EDGE01", "pull", "MASTER01")
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("refused:") and "Permission denied" in res.stderr
    assert pair.store("EDGE01").rows("pages") == 0


def test_the_key_not_the_caller_names_the_peer(pair):
    # The client asks to run serve for MASTER01 and says it is MASTER01; the
    # key's forced command serves EDGE01, so the claim is refused.
    hello = json.dumps({"t": "hello", "v": 2, "node": "MASTER01", "action": "pull",
                        "clock": int(time.time() * 1000)}).encode()  # fmt: skip
    res = subprocess.run(
        ["ssh", "-T", "-i", str(pair.root / "edge01" / "id_ed25519"), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={pair.root / 'edge01' / 'known_hosts'}",
         "-p", str(pair.ssh_port), "root@127.0.0.1",
         "edgesync", "serve", "--stdio", "--peer", "MASTER01"],
        input=len(hello).to_bytes(4, "big") + hello, capture_output=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert b"refused:" in res.stderr and b"its key is EDGE01's" in res.stderr
    assert pair.store("MASTER01").status()["refusals"]["last"][0]["peer"] == "EDGE01"
