"""The HTTP face on the real fleet, as its users and its operator meet it.

Every host serves its store over HTTP (roles/api, installed by upgrade.yml on
the fleet the previous release built): the probes answer the controller, the
content editor shows a page written on the master once it has synced, a read
on one edge of a farm that brings the bookmark of a write on the other edge
makes it pull that write at once, tokens are hashes the inventory lists and
revokes, and the service really runs in its sandbox.
"""

from __future__ import annotations

import html

import httpx
import pytest
from conftest import report
from runner_events import failures

FARM_A = ("edge01", "edge02")


@pytest.fixture(scope="module", autouse=True)
def converged_after(built, fleet):
    """These tests write; the tests after them find the fleet converged again."""
    yield
    failed, _present, digests, _rounds = fleet.converge(set())
    assert failed == [] and len(set(digests.values())) == 1, (failed, digests)


@pytest.fixture
def http():
    # Straight to the containers, whatever proxy the environment names.
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


def auth(fleet, host: str) -> dict:
    return {"authorization": f"Bearer {fleet.api_token(host)}"}


def test_every_hosts_api_is_healthy_and_ready_from_the_controller(built, fleet, http):
    for host, hv in fleet.hosts.items():
        url = fleet.api_url(host)
        health = http.get(f"{url}/healthz")
        assert health.status_code == 200, (host, health.text)
        assert health.json() == {"status": "ok", "node": hv["edgesync_name"]}
        ready = http.get(f"{url}/readyz")
        assert ready.status_code == 200, (host, ready.text)
        assert ready.headers["edgesync-node"] == hv["edgesync_name"]


def test_the_api_runs_as_the_agents_user_in_its_sandbox(built, fleet):
    facts = fleet.facts
    unit = facts["edgesync_http_service"]
    for host in fleet.hosts:
        wanted = {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "ProtectHome": "yes",
                  "PrivateTmp": "yes", "ReadWritePaths": facts["edgesync_data_dir"],
                  "User": facts["edgesync_user"], "ActiveState": "active"}  # fmt: skip
        shown = fleet.run(host, "systemctl", "show", unit, "-p", ",".join(wanted)).stdout
        assert dict(line.split("=", 1) for line in shown.splitlines()) == wanted, host
        # What its process sees: everything read-only but the data directory
        # and a /tmp and /var/tmp of its own; no home directories.
        pid = fleet.run(host, "systemctl", "show", unit, "-p", "MainPID", "--value").stdout.strip()
        mounts = {}
        for line in fleet.run(host, "cat", f"/proc/{pid}/mountinfo").stdout.splitlines():
            root, point, options = line.split()[3:6]
            mounts[point] = (root, options.split(",")[0])
        assert mounts["/"][1] == mounts["/run"][1] == "ro", (host, mounts["/"], mounts["/run"])
        writable = {p for p, (_root, rw) in mounts.items()
                    if rw == "rw" and p.split("/")[1] not in ("proc", "sys", "dev")}  # fmt: skip
        assert writable == {facts["edgesync_data_dir"], "/tmp", "/var/tmp"}, (host, writable)
        assert "systemd-private" in mounts["/tmp"][0] and "systemd-private" in mounts["/var/tmp"][0]
        assert mounts["/home"][0].endswith("inaccessible/dir"), (host, mounts["/home"])
        user = fleet.run(host, "ps", "-o", "user=", "-p", pid).stdout.strip()
        assert user == facts["edgesync_user"], host


def test_a_page_written_on_the_master_is_served_by_the_editor_on_an_edge(built, fleet, http):
    title = "Opening hours <of the London office>"
    data = {"section": "about", "title": title, "body": "Nine to five."}
    made = http.post(f"{fleet.api_url('master01')}/v1/pages", headers=auth(fleet, "master01"),
                     json=data)  # fmt: skip
    assert made.status_code == 201, made.text
    slug = made.json()["slug"]
    assert fleet.sync_round() == []
    page = http.get(f"{fleet.api_url('edge03')}/admin/content-editor/page/{slug}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert html.escape(title) in page.text and "Nine to five." in page.text
    by_slug = http.get(f"{fleet.api_url('edge04')}/v1/pages", params={"slug": slug})
    assert by_slug.status_code == 200 and by_slug.json()["id"] == made.json()["id"]


def pulls_from(fleet, host: str, peer: str) -> int:
    """Sessions in which ``host`` pulled from ``peer`` (its own agent's history)."""
    links = fleet.agent_json(host, "status", "--json")["links"]
    return sum(lk["sessions_ok"] for lk in links
               if lk["peer"] == peer and lk["action"] == "pull" and lk["initiated"])  # fmt: skip


def test_a_read_with_the_bookmark_of_a_write_on_the_farm_peer_sees_it(built, fleet, http, say):
    one, two = FARM_A
    before = pulls_from(fleet, two, fleet.hosts[one]["edgesync_name"])
    wrote = http.post(f"{fleet.api_url(one)}/v1/pages", headers=auth(fleet, one),
                      json={"section": "news", "title": "Written on edge01"})  # fmt: skip
    assert wrote.status_code == 201, wrote.text
    record, bookmark = wrote.json(), wrote.headers["edgesync-bookmark"]
    assert bookmark.startswith(fleet.hosts[one]["edgesync_name"] + ":")
    url = f"{fleet.api_url(two)}/v1/pages/{record['id']}"
    # Without the bookmark, edge02 answers from what it holds: not yet synced.
    stale = http.get(url)
    assert stale.status_code == 404, stale.text
    fresh = http.get(url, headers={"edgesync-bookmark": bookmark})
    assert fresh.status_code == 200, (
        fresh.status_code,
        fresh.headers.get("retry-after"),
        fresh.text,
    )
    assert fresh.json() == record
    # edge02 pulled it from edge01 itself, over the agents' SSH, when asked.
    after = pulls_from(fleet, two, fleet.hosts[one]["edgesync_name"])
    assert after == before + 1
    took = fresh.elapsed.total_seconds() * 1000
    say(
        f"read-your-writes across farm lon-a: edge02 answered the read with {bookmark} "
        f"in {took:.0f} ms, its pull from edge01 included"
    )


def test_a_token_taken_out_of_the_inventory_is_refused_at_once(built, fleet, http, tmp_path, say):
    """Revoking is a name gone from api_tokens and one run; no restart needed."""
    host = "edge01"
    old, new = fleet.api_token(host), "a-token-of-a-new-app-0002"
    inventory = fleet.edited_inventory(tmp_path)
    all_vars = inventory / "group_vars" / "all.yml"
    all_vars.write_text(all_vars.read_text().replace(
        next(iter(fleet.hosts[host]["api_tokens"])) + ": " + old, f"new-app: {new}"))  # fmt: skip
    limit = {"tags": "api", "limit": f"localhost,{host}"}

    def post(token: str) -> int:
        res = http.post(f"{fleet.api_url(host)}/v1/pages", json={"title": "by token"},
                        headers={"authorization": f"Bearer {token}"})  # fmt: skip
        return res.status_code

    try:
        revoke = fleet.playbook("site.yml", inventory=inventory, **limit)
        report(say, "site.yml --tags api: a token revoked, another added", revoke)
        assert revoke.rc == 0, failures(revoke)
        assert revoke.stats["changed"] == {host: 1}, revoke.stats["changed"]  # the tokens file
        assert (post(old), post(new)) == (401, 201)
        listed = fleet.run(host, "cat", fleet.facts["edgesync_http_tokens_path"]).stdout
        assert new not in listed and old not in listed and "new-app sha256:" in listed
    finally:
        restore = fleet.playbook("site.yml", **limit)
    assert restore.rc == 0, failures(restore)
    assert restore.stats["changed"] == {host: 1}, restore.stats["changed"]
    assert (post(old), post(new)) == (201, 401)
