"""A stolen edge attacks the fleet: through the real sshd, with EDGE01's genuinely
authorised key (and its signing key: the attacker holds the whole host), it
sends frames of its own making to EDGE02's `serve --stdio`, the one session an
edge may open to push. Nothing it sends may forge, suppress, hijack or halt
anyone else's data; each refusal is one line, exit 3 (2 for malformed input),
counted in the receiver's status.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sqlite3
import subprocess
import time
from unittest.mock import patch

import pytest
from farm import Farm, resign

from edgesync import forks, hlc, localfleet
from edgesync.changes import encode
from edgesync.errors import NotFound
from edgesync.ids import new_id
from edgesync.signing import GENESIS, KeyRing, Signer, b64, retired_path, sign_body

FLEET = {
    "MASTER01": ("master", None, ()),
    "NODE01": ("node", None, ("MASTER01", "EDGE01", "EDGE02")),
    "EDGE01": ("edge", "a", ()),
    "EDGE02": ("edge", "a", ()),
}
# Up from the edges to the master and back down: every write everywhere.
ROUND = [
    ("NODE01", "pull", "EDGE01"), ("NODE01", "pull", "EDGE02"),
    ("NODE01", "push", "MASTER01"), ("NODE01", "pull", "MASTER01"),
    ("NODE01", "push", "EDGE01"), ("NODE01", "push", "EDGE02"),
]  # fmt: skip


@pytest.fixture
def fleet(tmp_path, redis_server, sshd):
    redis_server.client().flushall()
    f = Farm(tmp_path, redis_server.url, FLEET)
    f.over_ssh(sshd, "EDGE01", "EDGE02")  # EDGE02 lets EDGE01 in, as for farm peers
    f.sshd = sshd
    yield f
    f.close()


def frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def attack(
    fleet, changes: list[dict], version: int = 2, yours: dict | None = None
) -> subprocess.CompletedProcess:
    """Push ``changes`` to EDGE02 over ssh as EDGE01, frames made by hand."""
    hello = {"t": "hello", "v": version, "node": "EDGE01", "action": "push",
             "clock": hlc.wall_ms(), "yours": yours or {}}  # fmt: skip
    data = frame(hello) + frame({"t": "batch", "last": 1, "changes": changes})
    return raw(fleet, data + frame({"t": "done"}))


def raw(fleet, frames: bytes) -> subprocess.CompletedProcess:
    """Send ``frames`` to EDGE02's serve over ssh with EDGE01's key."""
    root = fleet.root / "edge01"
    return subprocess.run(
        ["ssh", "-T", "-i", str(root / "id_ed25519"), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={root / 'known_hosts'}", "-p", str(fleet.sshd.port),
         "root@127.0.0.1", "serve"],
        input=frames, capture_output=True, timeout=60,
    )  # fmt: skip


def refused(res, *words: str) -> None:
    err = res.stderr.decode()
    assert res.returncode == 3, err
    assert err.startswith("refused:") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def log_of(store) -> list[dict]:
    return [json.loads(body) for _s, body, _o, _n in store.changes_after(0, 10_000)]


def signed(store, change: dict, prev: str = GENESIS) -> dict:
    """``change`` signed by ``store``'s key (the attacker holds EDGE01's)."""
    body, _value = sign_body(store.signer, prev, encode(change))
    return json.loads(body)


def full_round(fleet) -> None:
    for name, action, peer in ROUND:
        fleet.sync(name, action, peer)


def test_a_change_claiming_the_masters_origin_is_refused_and_the_real_one_arrives(fleet):
    edge01, edge02 = fleet.store("EDGE01"), fleet.store("EDGE02")
    rid = "MASTER01-LON-43AX-K3J9X0QZ-27112026200512"
    forged = {"o": "MASTER01", "n": 1, "h": hlc.tick(None, "MASTER01"), "t": "pages", "i": rid,
              "k": "new", "d": {"section": "s", "title": "forged", "body": None}}  # fmt: skip
    # Signed with the key the attacker has (EDGE01's), or with no real signature.
    res = attack(fleet, [signed(edge01, forged)])
    refused(res, "MASTER01:1", "does not carry MASTER01's signature")
    res = attack(fleet, [{**signed(edge01, forged), "s": "A" * 86}])
    refused(res, "MASTER01:1")
    assert edge02.rows("pages") == 0 and edge02.held() == {}
    rules = edge02.status()["refusals"]
    assert rules["count"] == 2 and rules["last"][0]["peer"] == "EDGE01"
    # The master's real change 1 is not mistaken for a duplicate anywhere.
    real = fleet.put("MASTER01", section="s", title="real")
    full_round(fleet)
    full_round(fleet)
    for name in FLEET:
        assert fleet.store(name).get("pages", real["id"])["title"] == "real"
    assert len(set(fleet.digests().values())) == 1


def test_a_change_in_the_receivers_own_name_or_past_any_counter_cannot_halt_it(fleet):
    edge01, edge02 = fleet.store("EDGE01"), fleet.store("EDGE02")
    rid = "EDGE02-LON-43AX-K3J9X0QZ-27112026200512"
    for n in (2**63 - 1, 2**53):
        change = {"o": "EDGE02", "n": n, "h": hlc.tick(None, "EDGE02"), "t": "pages", "i": rid,
                  "k": "new", "d": {"title": "x"}}  # fmt: skip
        res = attack(fleet, [signed(edge01, change)])
        assert res.returncode == 2, res.stderr
        assert b"bad origin sequence" in res.stderr and res.stderr.count(b"\n") == 1
    # In range, but in the receiver's own name: only its own key proves that.
    change = {"o": "EDGE02", "n": 5, "h": hlc.tick(None, "EDGE02"), "t": "pages", "i": rid,
              "k": "new", "d": {"title": "x"}}  # fmt: skip
    refused(attack(fleet, [signed(edge01, change)]), "EDGE02:5", "EDGE02's signature")
    # Its own writes go on, numbered as before.
    made = fleet.put("EDGE02", title="still writing")
    assert log_of(edge02)[-1]["n"] == 1 and edge02.get("pages", made["id"])
    # A huge counter in the attacker's own name harms nobody else either.
    mine = {"o": "EDGE01", "n": 2**53 - 1, "h": hlc.tick(None, "EDGE01"), "t": "pages",
            "i": "EDGE01-LON-43AX-K3J9X0QZ-27112026200512", "k": "new",
            "d": {"title": "y"}}  # fmt: skip
    assert attack(fleet, [signed(edge01, mine)]).returncode == 0
    fleet.put("EDGE02", title="and more")
    full_round(fleet)
    assert fleet.store("MASTER01").put("pages", {"title": "master writes"})


def test_a_record_created_in_another_nodes_name_is_refused(fleet):
    edge01, edge02 = fleet.store("EDGE01"), fleet.store("EDGE02")
    rid = "MASTER01-LON-43AX-K3J9X0QZ-27112026200512"
    change = {"o": "EDGE01", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages", "i": rid,
              "k": "new", "d": {"section": "s", "title": "mine now"}}  # fmt: skip
    refused(attack(fleet, [signed(edge01, change)]), "EDGE01:1", "MASTER01's name")
    assert edge02.rows("pages") == 0


def test_a_copied_slug_with_a_made_up_smaller_id_takes_nothing(fleet):
    edge01 = fleet.store("EDGE01")
    real = fleet.put("MASTER01", section="news", title="Launch")
    full_round(fleet)
    code = real["id"].split("-")[2]
    assert real["slug"] == f"news-launch-{code.lower()}"
    # A smaller ID in the master's name, wanting the same slug: as an edit
    # (a "new" in another's name is refused), so its record is never born.
    fake = f"MASTER01-LON-{code}-00000000-01011970000000"
    assert fake < real["id"]
    change = {"o": "EDGE01", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages", "i": fake,
              "k": "put", "d": {"section": "news", "title": "Launch", "body": "pwned",
                                "_code": code}}  # fmt: skip
    res = attack(fleet, [signed(edge01, change)])
    assert res.returncode == 0, res.stderr
    edge01.apply_changes([signed(edge01, change)])  # the attacker's own host holds it too
    full_round(fleet)
    for name in FLEET:
        store = fleet.store(name)
        assert store.get_by_slug("pages", real["slug"])["id"] == real["id"], name
        assert store.get("pages", real["id"])["slug"] == real["slug"]
        with pytest.raises(Exception, match="not found"):
            store.get("pages", fake)
    assert len(set(fleet.digests().values())) == 1


def test_a_genuine_change_altered_on_the_way_is_refused(fleet):
    made = fleet.put("MASTER01", section="s", title="genuine")
    # The master's change reaches the attacker's host, not EDGE02 yet.
    for name, action, peer in [("NODE01", "pull", "MASTER01"), ("NODE01", "push", "EDGE01")]:
        fleet.sync(name, action, peer)
    change = next(c for c in log_of(fleet.store("EDGE01")) if c["o"] == "MASTER01")
    tampered = {**change, "d": {**change["d"], "title": "altered"}}
    refused(attack(fleet, [tampered]), "MASTER01:1", "MASTER01's signature")
    # Whole batches are refused: a genuine change with a forged one applies neither.
    edge01 = fleet.store("EDGE01")
    mine = fleet.put("EDGE01", title="genuine edge01")
    genuine = log_of(edge01)[-1]
    refused(attack(fleet, [genuine, tampered]))
    with pytest.raises(Exception, match="not found"):
        fleet.store("EDGE02").get("pages", mine["id"])
    # As it is, it is applied; altered again once held, it is a duplicate: skipped.
    assert attack(fleet, [change]).returncode == 0
    assert attack(fleet, [tampered]).returncode == 0
    assert fleet.store("EDGE02").get("pages", made["id"])["title"] == "genuine"


def test_a_chain_spliced_from_two_origins_or_reordered_is_refused(fleet):
    edge01 = fleet.store("EDGE01")
    for i in range(3):
        fleet.put("MASTER01", title=f"m{i}")
    for name, action, peer in [("NODE01", "pull", "MASTER01"), ("NODE01", "push", "EDGE01")]:
        fleet.sync(name, action, peer)  # the attacker's host holds them, EDGE02 not yet
    mchanges = [c for c in log_of(edge01) if c["o"] == "MASTER01"]
    # Changes in the middle of a run are proved by the next one's link: swap one
    # body for a forged one and the run no longer links.
    forged = resign({**mchanges[1], "d": {"title": "spliced"}}, edge01)
    forged["o"] = "MASTER01"
    refused(attack(fleet, [mchanges[0], forged, mchanges[2]]), "MASTER01:")


def test_a_change_from_an_origin_without_a_known_key_is_refused(fleet, tmp_path):
    # EDGE09 is no member of this fleet (or was removed from it): no key anywhere.
    stranger_dir = tmp_path / "stranger"
    stranger_dir.mkdir()
    stranger = Signer.create(stranger_dir / "signing_key", "EDGE09")
    change = {"o": "EDGE09", "n": 1, "h": hlc.tick(None, "EDGE09"), "t": "pages",
              "i": "EDGE09-LON-43AX-K3J9X0QZ-27112026200512", "k": "new",
              "d": {"title": "from nowhere"}}  # fmt: skip
    body, _v = sign_body(stranger, GENESIS, encode(change))
    refused(attack(fleet, [json.loads(body)]), "EDGE09:1", "no known public key")
    # Revocation: EDGE01 leaves NODE01's view of the fleet (its peers, trusted
    # list and keys file, as the next site.yml makes them). EDGE02 has not
    # heard yet and relays EDGE01's later change: NODE01 refuses it.
    fleet.put("EDGE01", title="before revocation")
    full_round(fleet)
    keys = fleet.root / "fleet_keys"
    lines = keys.read_text().splitlines(keepends=True)
    keys.write_text("".join(line for line in lines if not line.startswith("EDGE01 ")))
    cfg = fleet.config_path("NODE01")
    text = cfg.read_text().replace('"EDGE01", ', "").replace(', "EDGE01"', "")
    head, _sep, rest = text.partition("[peers.EDGE01]")
    cfg.write_text(head + rest[rest.index("\n[") + 1 :])
    later = fleet.put("EDGE01", title="after revocation")
    fleet.sync("EDGE01", "push", "EDGE02")
    res = fleet.cli("NODE01", "pull", "EDGE02")
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("refused:") and "EDGE01" in res.stderr, res.stderr
    assert "no known public key" in res.stderr and res.stderr.count("\n") == 1
    node01 = fleet.store("NODE01")
    assert node01.status()["refusals"]["count"] == 1
    with pytest.raises(Exception, match="not found"):
        node01.get("pages", later["id"])
    # What it wrote before stays.
    assert node01.rows("pages") == 1


def test_a_replayed_head_with_a_made_up_number_does_not_make_a_node_start_again(fleet):
    for i in range(2):
        fleet.put("EDGE02", title=f"e2 {i}")
    full_round(fleet)
    theirs = [c for c in log_of(fleet.store("EDGE01")) if c["o"] == "EDGE02"][-1]
    for head in (
        {**theirs, "n": 1000},  # genuine signature, number made up
        {**theirs, "d": {"title": "other"}},  # genuine signature, content made up
        resign({**theirs, "n": 1000}, fleet.store("EDGE01")),  # signed by the wrong key
    ):
        res = attack(fleet, [], yours={"EDGE02": json.dumps(head)})
        assert res.returncode == 0, res.stderr
    for junk in ("{", "[" * 100_000, json.dumps({"o": 1}), 5):
        assert attack(fleet, [], yours={"EDGE02": junk}).returncode == 0
    assert fleet.store("EDGE02").status()["origin"] == "EDGE02"
    assert log_of(fleet.store("EDGE02"))[-1]["n"] == 2


def test_an_agent_before_signing_is_refused_naming_the_version_gap(fleet):
    res = attack(fleet, [], version=1)
    refused(res, "EDGE01 speaks sync protocol 1 (unsigned changes)", "this agent speaks 2-4")


def test_an_agent_too_new_is_refused_naming_both_versions(fleet):
    hello = {"t": "hello", "v": 5, "speaks": [5, 6], "node": "EDGE01", "action": "push",
             "clock": hlc.wall_ms(), "yours": {}}  # fmt: skip
    refused(raw(fleet, frame(hello)), "EDGE01 speaks sync protocol 5-6", "this agent speaks 2-4")
    assert fleet.store("EDGE02").rows("pages") == 0


def backup(store_path, to) -> None:
    src = sqlite3.connect(store_path)
    dst = sqlite3.connect(to)
    src.backup(dst)
    dst.close()
    src.close()


def test_an_edge_restored_from_an_old_backup_delivers_its_new_writes(fleet, tmp_path):
    db = fleet.store("EDGE01").config.db_path
    early = [fleet.put("EDGE01", title=f"early {i}")["id"] for i in range(3)]
    fleet.sync("NODE01", "pull", "EDGE01")
    backup(db, tmp_path / "edge01-backup.db")
    lost_here = [fleet.put("EDGE01", title=f"after the backup {i}")["id"] for i in range(2)]
    fleet.sync("NODE01", "pull", "EDGE01")
    # The disk dies; the edge comes back from last night's backup.
    fleet.close()
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.copy(tmp_path / "edge01-backup.db", db)
    assert fleet.store("EDGE01").held().get("EDGE01") == 3
    after = [fleet.put("EDGE01", title=f"after the restore {i}")["id"] for i in range(2)]
    # Its numbers 4 and 5 are the fleet's already; the next session shows it.
    report = fleet.sync("NODE01", "pull", "EDGE01")
    assert report["applied"] >= 2, report
    full_round(fleet)
    fleet.sync("EDGE01", "pull", "NODE01")
    full_round(fleet)
    for name in FLEET:
        store = fleet.store(name)
        for rid in early + lost_here + after:
            assert store.get("pages", rid), (name, rid)
    assert len(set(fleet.digests().values())) == 1
    status = fleet.store("EDGE01").status()
    assert status["origin"].startswith("EDGE01.")
    # A restore is an incarnation, not a fork: nobody holds anything back.
    for name in FLEET:
        assert fleet.store(name).status()["forks"] == [], name
    # It keeps writing and delivering under its new incarnation.
    more = fleet.put("EDGE01", title="and on")
    full_round(fleet)
    assert fleet.store("MASTER01").get("pages", more["id"])


def made_anew(fleet, name: str, new_incarnation: bool = True) -> str:
    """``name``'s host lost with its data (database and signing key) and made
    anew by the playbooks: init (as a name the fleet knew, when told), the
    keys file with its new key. Returns its old public key."""
    fleet.close()
    store = fleet.store(name)
    cfg = store.config
    old = cfg.signing_key.with_name(cfg.signing_key.name + ".pub").read_text().split()[1]
    fleet.close()
    for path in (cfg.db_path, cfg.signing_key):
        for suffix in ("", "-wal", "-shm", ".pub"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    fleet.store(name).init(new_incarnation=new_incarnation)
    localfleet.share_keys(fleet.root, FLEET)
    return old


def test_a_host_made_anew_under_its_name_starts_a_new_incarnation_and_gets_its_past_back(fleet):
    early = [fleet.put("EDGE01", title=f"before the loss {i}")["id"] for i in range(3)]
    full_round(fleet)
    old_key = made_anew(fleet, "EDGE01")
    status = fleet.store("EDGE01").status()
    assert status["origin"].startswith("EDGE01."), status["origin"]
    after = [fleet.put("EDGE01", title=f"after the loss {i}")["id"] for i in range(2)]
    # Its predecessor's changes carry the old key's signature: refused until
    # the trust role lists that key as retired.
    res = fleet.cli("EDGE01", "pull", "NODE01")
    assert res.returncode == 3 and "does not carry EDGE01's signature" in res.stderr, res.stderr
    retired_path(localfleet.keys_path(fleet.root)).write_text(f"EDGE01 {old_key}\n")
    fleet.close()
    full_round(fleet)
    for name in FLEET:
        for rid in early + after:
            assert fleet.store(name).get("pages", rid), (name, rid)
    assert len(set(fleet.digests().values())) == 1
    # Nothing was numbered again in the old origin: no host sees a fork.
    for name in FLEET:
        assert fleet.store(name).status()["forks"] == [], name


def test_init_for_a_host_that_exists_keeps_its_origin(fleet):
    fleet.put("EDGE02", title="kept")
    fleet.close()
    fleet.store("EDGE02").init(new_incarnation=True)
    assert fleet.store("EDGE02").status()["origin"] == "EDGE02"


def one_line(res, codes=(2, 3, 4)) -> str:
    err = res.stderr.decode(errors="replace")
    assert res.returncode in codes, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_crafted_fields_get_one_line_and_an_exit_code_never_a_traceback(fleet):
    edge01 = fleet.store("EDGE01")

    def mine(**kw):
        return {"o": "EDGE01", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                "i": "EDGE01-LON-43AX-K3J9X0QZ-27112026200512", "k": "new",
                "d": {"title": "x"}, **kw}  # fmt: skip

    for change in (
        {**signed(edge01, mine()), "p": GENESIS + "\n"},
        {**signed(edge01, mine()), "p": GENESIS[:-1] + "B"},  # the same value spelt otherwise
        signed(edge01, mine(o="EDGE01\n")),
        {**signed(edge01, mine()), "t": ["pages"]},
        signed(edge01, mine(h=hlc.tick(None, "MASTER01"))),  # a stamp in another's name
    ):
        assert "exit" not in one_line(attack(fleet, [change]), codes=(2,))
    one_line(attack(fleet, [], version="\u00b2"), codes=(2,))
    hello = {"t": "hello", "v": 2, "node": "EDGE01", "action": "pull", "clock": hlc.wall_ms(),
             "yours": {}, "held": {"EDGE02": "x"}, "cursor": 0, "log": None}  # fmt: skip
    one_line(raw(fleet, frame(hello)))
    one_line(raw(fleet, frame({**hello, "held": {}, "cursor": 2**70})))
    deep = b'{"t":"hello","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    one_line(raw(fleet, len(deep).to_bytes(4, "big") + deep))
    big = b'{"t":"hello","v":' + b"9" * 5000 + b"}"
    one_line(raw(fleet, len(big).to_bytes(4, "big") + big))
    assert fleet.store("EDGE02").rows("pages") == 0


def chain_of(store, changes: list[dict]) -> list[dict]:
    prev, out = GENESIS, []
    for change in changes:
        body, value = sign_body(store.signer, prev, encode(change))
        prev = b64(value)
        out.append(json.loads(body))
    return out


def test_records_sharing_a_random_part_settle_without_a_clash(fleet):
    edge01 = fleet.store("EDGE01")

    def rec(n, rid):
        return {"o": "EDGE01.AAAAAAAA", "n": n, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                "i": rid, "k": "new",
                "d": {"section": "news", "title": "Launch", "_code": "00AA"}}  # fmt: skip

    a0, a1, a2 = chain_of(edge01, [
        rec(1, "EDGE01-LON-00AA-00000000-01011970000000"),
        rec(2, "EDGE01-LON-00AB-ZZZZZZZZ-01011970000000"),  # the same random part
        rec(3, "EDGE01-LON-00AC-ZZZZZZZZ-01011970000000"),  # as this one
    ])  # fmt: skip
    assert attack(fleet, [a0, a1]).returncode == 0
    edge01.apply_changes([a0])
    edge01.apply_changes([a2])
    fleet.put("EDGE02", title="genuine edge02 write")
    full_round(fleet)
    full_round(fleet)
    slugs = [fleet.store("NODE01").get("pages", r["i"])["slug"] for r in (a0, a1, a2)]
    assert len(set(slugs)) == 3
    assert len(set(fleet.digests().values())) == 1


def test_a_change_whose_signature_only_its_successor_proved_does_not_stall_a_link(fleet):
    edge01 = fleet.store("EDGE01")
    c = {"o": "EDGE01.CCCCCCCC", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages",
         "i": "EDGE01-LON-00AA-11111111-01011970000000", "k": "new",
         "d": {"title": "x1"}}  # fmt: skip
    x1, x2 = chain_of(edge01, [c, {**c, "n": 2, "i": "EDGE01-LON-00AA-22222222-01011970000000"}])
    x1 = {**x1, "s": "A" * 86}  # never validly signed: only x2's signature proves it
    assert attack(fleet, [x2]).returncode == 0
    assert attack(fleet, [x1, x2]).returncode == 0  # EDGE02 logs x2, then x1
    made = fleet.put("EDGE02", title="genuine edge02 write")
    report = fleet.sync("NODE01", "pull", "EDGE02")  # sent as x2, x1: checked in order
    assert report["applied"] >= 3
    assert fleet.store("NODE01").get("pages", made["id"])


def test_a_restore_with_no_own_writes_since_the_backup_still_delivers(fleet, tmp_path):
    db = fleet.store("EDGE01").config.db_path
    fleet.put("EDGE01", title="before the backup")
    fleet.sync("NODE01", "pull", "EDGE01")
    backup(db, tmp_path / "backup.db")
    for i in range(3):  # after the backup EDGE01 only receives changes
        fleet.put("MASTER01", title=f"m{i}")
    full_round(fleet)
    fleet.sync("NODE01", "pull", "EDGE01")  # NODE01's cursor now past the backup's log
    fleet.close()
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.db", db)
    new = fleet.put("EDGE01", title="written after the restore")
    for _ in range(2):
        full_round(fleet)
    for name in FLEET:
        assert fleet.store(name).get("pages", new["id"]), name
    assert len(set(fleet.digests().values())) == 1


# -- a stolen key signing two histories (forks.py) --------------------------------------


def theirs(store, n: int, prev: str, title: str) -> dict:
    """Change ``n`` of EDGE01's origin made by whoever holds its key, chained on ``prev``."""
    change = {"o": "EDGE01", "n": n, "h": hlc.tick(None, "EDGE01"), "t": "pages",
              "i": new_id("EDGE01", store.config.location), "k": "new",
              "d": {"title": title}}  # fmt: skip
    return signed(store, change, prev)


def value_after(change: dict) -> str:
    return forks.value_of(encode(change))


def round_with_edges_pulling(fleet) -> None:
    full_round(fleet)
    fleet.sync("EDGE01", "pull", "NODE01")
    fleet.sync("EDGE02", "pull", "NODE01")


def test_two_histories_signed_with_a_stolen_key_are_proved_held_back_and_settled_alike(fleet):
    edge01 = fleet.store("EDGE01")
    early = [fleet.put("EDGE01", title=f"genuine {i}")["id"] for i in range(2)]
    full_round(fleet)
    # The thief signs a change 3 of its own for EDGE02 while EDGE01 writes its
    # own 3, which NODE01 pulls: each would keep its 3 as the only one.
    forged = theirs(edge01, 3, edge01.log.own_chain(2), "for edge02's eyes only")
    assert attack(fleet, [forged]).returncode == 0
    genuine = fleet.put("EDGE01", title="genuine 3")
    assert log_of(edge01)[-1]["n"] == 3
    fleet.sync("NODE01", "pull", "EDGE01")
    # And goes on from its branch: a 4 that may only ever be held back.
    after = theirs(edge01, 4, value_after(forged), "after the fork")
    assert attack(fleet, [after]).returncode == 0
    others = [fleet.put(name, title=f"{name} writes on")["id"] for name in ("EDGE02", "MASTER01")]
    for _ in range(3):
        round_with_edges_pulling(fleet)
    statuses = {name: fleet.store(name).status() for name in FLEET}
    for name, status in statuses.items():
        assert [(f["origin"], f["n"]) for f in status["forks"]] == [("EDGE01", 3)], name
    # EDGE02 held the thief's 4 back (it is nowhere); EDGE01 went on under a new origin.
    assert statuses["EDGE02"]["forks"][0]["withheld"] >= 1
    assert statuses["EDGE01"]["origin"].startswith("EDGE01.")
    # One rule everywhere: the same content, the thief's 4 nowhere, and every
    # write acknowledged to a user (EDGE01's own 3 among them) everywhere.
    assert len(set(fleet.digests().values())) == 1, fleet.digests()
    for name in FLEET:
        store = fleet.store(name)
        for rid in [*early, genuine["id"], *others]:
            assert store.get("pages", rid), (name, rid)
        with pytest.raises(NotFound):
            store.get("pages", after["i"])
    # EDGE01's status names where it went on; the fork names it too.
    assert statuses["EDGE01"]["forks"][0]["went_on_as"] == statuses["EDGE01"]["origin"]
    # The proof is two changes any host can check with EDGE01's public key alone.
    _o, _n, winner, other = forks.known(fleet.store("MASTER01").db)[0]
    ring = KeyRing(("EDGE01", edge01.signer.public), dict)
    assert forks.proves_fork(winner, other, ring) == ("EDGE01", 3)
    assert {json.loads(winner)["i"], json.loads(other)["i"]} == {forged["i"], genuine["id"]}
    # And the fleet keeps going: EDGE01's writes under its new origin arrive.
    more = fleet.put("EDGE01", title="and on")
    round_with_edges_pulling(fleet)
    assert fleet.store("MASTER01").get("pages", more["id"])
    assert len(set(fleet.digests().values())) == 1


def test_a_fork_relayed_through_a_node_reaches_hosts_that_never_met_the_thief(fleet):
    edge01 = fleet.store("EDGE01")
    fleet.put("EDGE01", title="genuine 1")
    full_round(fleet)
    # Only EDGE02 sees the thief's 2; only NODE01 and the master EDGE01's own.
    forged = theirs(edge01, 2, edge01.log.own_chain(1), "forged 2")
    assert attack(fleet, [forged]).returncode == 0
    fleet.put("EDGE01", title="genuine 2")
    fleet.sync("NODE01", "pull", "EDGE01")
    fleet.sync("NODE01", "push", "MASTER01")
    assert fleet.store("MASTER01").status()["forks"] == []
    fleet.sync("NODE01", "pull", "EDGE02")  # NODE01 sees both: the proof
    assert [f["n"] for f in fleet.store("NODE01").status()["forks"]] == [2]
    fleet.sync("NODE01", "push", "MASTER01")  # and passes it on, like data
    fork = fleet.store("MASTER01").status()["forks"]
    assert [(f["origin"], f["n"], f.get("went_on_as")) for f in fork] == [("EDGE01", 2, None)]


def test_fork_statements_that_are_not_what_the_protocol_says_get_one_line(fleet):
    hello = {"t": "hello", "v": 4, "speaks": [4], "node": "EDGE01", "action": "pull",
             "clock": hlc.wall_ms(), "yours": {}, "held": {}, "cursor": 0, "log": None}  # fmt: skip
    for bad in (
        {"chains": {"EDGE02": [[1, GENESIS]]}},  # not flat
        {"chains": {"EDGE02": [1]}},
        {"chains": {"EDGE02": [0, GENESIS]}},
        {"chains": {"EDGE02": [1, "x"]}},
        {"chains": []},
        {"forks": {"EDGE02": [1, GENESIS, 3]}},
        {"forks": {"EDGE02": [2**64, GENESIS]}},
    ):
        err = one_line(raw(fleet, frame({**hello, **bad})), codes=(2,))
        assert "malformed frame" in err and ("chains" in err or "forks" in err), err


def test_a_fork_is_found_by_a_push_too(fleet):
    edge01 = fleet.store("EDGE01")
    fleet.put("EDGE01", title="genuine 1")
    full_round(fleet)
    forged = theirs(edge01, 2, edge01.log.own_chain(1), "forged 2")
    assert attack(fleet, [forged]).returncode == 0  # EDGE02 holds the thief's 2
    fleet.put("EDGE01", title="genuine 2")
    fleet.sync("NODE01", "pull", "EDGE01")  # NODE01 holds EDGE01's own 2
    # EDGE02 states its chain in the welcome; NODE01 shows it its 2.
    fleet.sync("NODE01", "push", "EDGE02")
    assert [(f["origin"], f["n"]) for f in fleet.store("EDGE02").status()["forks"]] == [
        ("EDGE01", 2)
    ]


def test_changes_kept_ahead_of_a_gap_are_bounded(fleet):
    cfg = fleet.config_path("EDGE02")
    cfg.write_text(cfg.read_text().replace("[node]\n", "[node]\nmax_early = 3\n", 1))
    fleet.close()
    edge01 = fleet.store("EDGE01")

    def c(n):
        return {"o": "EDGE01", "n": n, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                "i": new_id("EDGE01", "LON"), "k": "new", "d": {"title": f"x{n}"}}  # fmt: skip

    run = chain_of(edge01, [c(n) for n in range(1, 6)])
    # Numbers 2 to 5 without 1: four to keep ahead of the gap, one too many.
    res = attack(fleet, run[1:])
    refused(res, "4 changes of EDGE01", "max_early is 3")
    edge02 = fleet.store("EDGE02")
    assert edge02.rows("pages") == 0 and edge02.db.execute(
        "SELECT count(*) FROM _early"
    ).fetchone() == (0,)
    assert edge02.status()["refusals"]["count"] == 1
    # Three are kept; once the gap fills, all five are applied.
    assert attack(fleet, run[1:4]).returncode == 0
    assert attack(fleet, run[:1] + run[4:]).returncode == 0
    assert edge02.rows("pages") == 5 and edge02.held()["EDGE01"] == 5


# -- quotas (quotas.py) ---------------------------------------------------------------------


def with_quota(fleet, name: str, changes: int, interval_s: int) -> None:
    cfg = fleet.config_path(name)
    quota = f"[node]\nquota_changes = {changes}\nquota_interval_s = {interval_s}\n"
    cfg.write_text(cfg.read_text().replace("[node]\n", quota, 1))
    fleet.close()


def refused_line(res) -> str:
    """The one line a CLI session refused with (exit 3)."""
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("refused:") and res.stderr.count("\n") == 1, res.stderr
    return res.stderr


def next_window(every: int) -> None:
    time.sleep(every - time.time() % every + 0.05)


def test_an_origin_over_a_quota_is_deferred_in_one_line_and_delivered_later(fleet):
    every = 3
    with_quota(fleet, "NODE01", 5, every)
    with_quota(fleet, "MASTER01", 3, every)
    burst = [fleet.put("EDGE01", title=f"burst {i}")["id"] for i in range(12)]
    other = [fleet.put("EDGE02", title=f"edge02 {i}")["id"] for i in range(3)]
    next_window(every)
    res = fleet.cli("NODE01", "pull", "EDGE01")
    err = refused_line(res)
    assert "NODE01's quota per node (5 changes per 3 s): 7 of EDGE01 deferred" in err, err
    node = fleet.store("NODE01")
    assert node.held()["EDGE01"] == 5
    used = node.status()["quota"]["origins"]["EDGE01"]
    assert (used["changes"], used["deferred"]) == (5, 7) and used["bytes"] > 0
    # Another origin is not held up by it.
    assert fleet.sync("NODE01", "pull", "EDGE02")["applied"] == 3
    # The master defers what is over its own quota from NODE01's push the same way.
    res = fleet.cli("NODE01", "push", "MASTER01")
    assert "MASTER01's quota" in refused_line(res)
    # Window by window the rest arrives; nothing is lost.
    for _ in range(5):
        next_window(every)
        fleet.cli("NODE01", "pull", "EDGE01")
        fleet.cli("NODE01", "push", "MASTER01")
    master = fleet.store("MASTER01")
    assert node.held()["EDGE01"] == 12 and master.held()["EDGE01"] == 12
    for rid in burst + other:
        assert master.get("pages", rid)
    assert fleet.store("MASTER01").status()["refusals"]["count"] >= 1


def test_a_record_made_later_with_a_smaller_id_in_its_own_name_never_takes_a_masters_slug(fleet):
    edge01 = fleet.store("EDGE01")
    real = fleet.put("MASTER01", section="news", title="Launch")
    full_round(fleet)
    code = real["id"].split("-")[2]
    slug = real["slug"]
    # The thief creates, in EDGE01's own name (allowed), a record whose ID sorts
    # before the master's and which wants the same slug.
    fake = f"EDGE01-LON-{code}-00000000-01011970000000"
    assert fake < real["id"]
    change = {"o": "EDGE01", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages", "i": fake,
              "k": "new", "d": {"section": "news", "title": "Launch", "body": "pwned",
                                "_code": code}}  # fmt: skip
    assert attack(fleet, [signed(edge01, change)]).returncode == 0
    # Before the master has seen it, EDGE02 holds the smaller ID's claim: provisional.
    edge02 = fleet.store("EDGE02")
    assert edge02.get_by_slug("pages", slug)["id"] == fake
    for _ in range(2):
        full_round(fleet)
    for name in FLEET:
        store = fleet.store(name)
        assert store.get_by_slug("pages", slug)["id"] == real["id"], name
        assert store.get("pages", fake)["slug"] != slug, name
    # The slug EDGE02 showed for the fake answers with the record that holds it.
    assert len(set(fleet.digests().values())) == 1
    # Only a master's change may claim a slug: the thief's claim is refused.
    claim = {"o": "EDGE01", "n": 2, "h": hlc.tick(None, "EDGE01"), "t": "pages", "i": fake,
             "k": "put", "d": {"_claim": slug}}  # fmt: skip
    prev = value_after(signed(edge01, change))
    refused(attack(fleet, [signed(edge01, claim, prev)]), "EDGE01:2", "only masters settle slugs")


# -- found by an attack review --------------------------------------------------------


def incarnations(store, count: int, title: str) -> list[dict]:
    """Change 1 of ``count`` made-up incarnations of EDGE01, signed with its key."""
    out = []
    for k in range(count):
        origin = f"EDGE01.{k:08d}"
        change = {"o": origin, "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                  "i": new_id("EDGE01", store.config.location), "k": "new",
                  "d": {"title": f"{title} {k}"}}  # fmt: skip
        out.append(signed(store, change))
    return out


def test_a_quota_per_origin_is_not_bypassed_by_made_up_incarnations(fleet):
    with_quota(fleet, "EDGE02", 3, 3600)
    edge01 = fleet.store("EDGE01")
    res = attack(fleet, incarnations(edge01, 20, "flood"))
    assert res.returncode == 0, res.stderr
    assert b'"deferred": 17' in res.stdout, res.stdout[-200:]
    assert fleet.store("EDGE02").rows("pages") == 3


def test_changes_withheld_after_a_fork_count_against_the_quota(fleet):
    with_quota(fleet, "EDGE02", 3, 3600)
    edge01 = fleet.store("EDGE01")

    def c(n, title):
        return {"o": "EDGE01.WWWWWWWW", "n": n, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                "i": new_id("EDGE01", "LON"), "k": "new", "d": {"title": title}}  # fmt: skip

    a = chain_of(edge01, [c(1, "a")])
    b = chain_of(edge01, [c(1, "b"), *[c(n, "x" * 1000) for n in range(2, 40)]])
    assert attack(fleet, a).returncode == 0
    attack(fleet, b[:1])  # the fork, proved at 1
    assert [f["n"] for f in fleet.store("EDGE02").status()["forks"]] == [1]
    attack(fleet, b[1:])  # then as many as it likes, each kept for ever
    kept = fleet.store("EDGE02").db.execute("SELECT count(*) FROM _withheld").fetchone()[0]
    assert kept <= 4, kept


def test_more_origins_than_a_statement_may_name_do_not_halt_the_fleet(fleet):
    edge01 = fleet.store("EDGE01")
    flood = incarnations(edge01, forks.MAX_ORIGINS + 1, "flood")
    for part in (flood[:5000], flood[5000:]):
        assert attack(fleet, part).returncode == 0
    fleet.put("EDGE02", title="genuine edge02 write")
    fleet.sync("NODE01", "pull", "EDGE02")
    # NODE01 now holds more origins than its hello may state checkpoints for.
    fleet.put("MASTER01", title="genuine master write")
    fleet.sync("NODE01", "pull", "MASTER01")
    fleet.sync("NODE01", "push", "MASTER01")


def test_unsigned_changes_at_a_fork_point_are_not_kept_for_ever(fleet):
    edge01 = fleet.store("EDGE01")

    def c(title):
        return {"o": "EDGE01.VVVVVVVV", "n": 1, "h": hlc.tick(None, "EDGE01"), "t": "pages",
                "i": new_id("EDGE01", "LON"), "k": "new", "d": {"title": title}}  # fmt: skip

    assert attack(fleet, chain_of(edge01, [c("a")])).returncode == 0
    assert attack(fleet, chain_of(edge01, [c("b")])).returncode == 0  # the fork, at 1
    # At a number it holds a receiver checks no signature: junk, as much as one likes.
    junk = [{**chain_of(edge01, [c(f"junk {k}")])[0], "s": "A" * 86} for k in range(50)]
    attack(fleet, junk)
    kept = fleet.store("EDGE02").db.execute("SELECT count(*) FROM _withheld").fetchone()[0]
    assert kept <= 1, kept


def test_a_made_up_checkpoint_does_not_make_a_host_load_an_origins_whole_log(fleet):
    edge02 = fleet.store("EDGE02")
    for i in range(300):
        fleet.put("EDGE02", title=f"edge02 {i}")
    first = forks.value_of(edge02.log.body_at("EDGE02", 1))
    # A puller states it agrees at 1 and differs at 300: no fork anywhere; the
    # sender must not load every change between (with an origin of millions of
    # changes, that much memory per session).
    stated = {"chains": {"EDGE02": [1, first, 300, GENESIS]}}
    with patch.object(forks, "SEARCH", 100):  # a search reads at most SEARCH a session,
        evidence = edge02.evidence_for(stated)
        assert inspect.isgenerator(evidence)  # a page at a time, as they are sent
        sent = [json.loads(body)["n"] for body in evidence]
    assert sent == list(range(201, 301))  # the highest first found: the rest later
