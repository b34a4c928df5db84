"""The Ansible modules, run in-process against real agents of a local farm."""

import importlib.util
import json
import sys
import threading
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from httpnode import HttpNode

from edgesync.config import load as load_config

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_load("ansible.module_utils.edgesync_agent", PLUGINS / "module_utils" / "edgesync_agent.py")
_load("ansible.module_utils.edgesync_api", PLUGINS / "module_utils" / "edgesync_api.py")
_load("ansible.module_utils.edgesync_balancer", PLUGINS / "module_utils" / "edgesync_balancer.py")
push = _load("edgesync_push", PLUGINS / "modules" / "edgesync_push.py")
pull = _load("edgesync_pull", PLUGINS / "modules" / "edgesync_pull.py")
info = _load("edgesync_info", PLUGINS / "modules" / "edgesync_info.py")
digest = _load("edgesync_digest", PLUGINS / "modules" / "edgesync_digest.py")


def run(module, capsys, farm, node, check=False, **args):
    agent = str(Path(sys.executable).parent / "edgesync")
    params = {"config": str(farm.config_path(node)), "agent": agent, "user": "",
              "_ansible_check_mode": check, **args}  # fmt: skip
    with patch_module_args(params), pytest.raises(SystemExit) as done:
        module.main()
    result = json.loads(capsys.readouterr().out)
    return done.value.code, result


def test_push_is_changed_only_when_something_was_applied(farm, capsys):
    farm.put("EDGE01", title="one")
    rc, first = run(push, capsys, farm, "EDGE01", peer="EDGE02")
    assert rc == 0 and first["changed"] and first["applied"] == 1
    rc, second = run(push, capsys, farm, "EDGE01", peer="EDGE02")
    assert rc == 0 and not second["changed"] and second["applied"] == 0


def test_pull_in_check_mode_reports_and_moves_nothing(farm, capsys):
    farm.put("EDGE01", title="one")
    farm.put("EDGE01", title="two")
    rc, dry = run(pull, capsys, farm, "NODE01", check=True, peer="EDGE01")
    assert rc == 0 and dry["changed"] and dry["would_receive"] == 2
    assert farm.store("NODE01").rows("pages") == 0
    rc, real = run(pull, capsys, farm, "NODE01", peer="EDGE01")
    assert real["changed"] and real["applied"] == 2


def test_a_refusal_fails_the_task_with_the_agents_message(farm, capsys):
    farm.put("EDGE01", title="one")
    rc, res = run(push, capsys, farm, "EDGE01", peer="MASTER01")
    assert rc == 1 and res["failed"] and res["refused"]
    assert res["msg"].startswith("refused: edges push only to edges of their own farm")
    assert farm.store("MASTER01").rows("pages") == 0


def test_info_reports_status_and_digest(farm, capsys):
    farm.put("EDGE01", title="one")
    rc, res = run(info, capsys, farm, "EDGE01")
    assert rc == 0 and not res["changed"]
    assert res["status"]["node"] == "EDGE01" and res["status"]["rows"] == {"pages": 1}
    assert res["digest"] == farm.store("EDGE01").digest()


def test_info_reads_the_hosts_api_its_rate_and_p99_then_a_drain_then_its_absence(farm, capsys):
    farm.put("EDGE01", title="one")
    node = HttpNode(farm.config_path("EDGE01")).start()
    stop = threading.Event()

    def users():  # a user reading pages while the module samples
        with node.client() as client:
            while not stop.is_set():
                assert client.get("/v1/pages").status_code == 200

    reader = threading.Thread(target=users)
    reader.start()
    try:
        rc, busy = run(info, capsys, farm, "EDGE01", http_settings=str(node.settings))
        stop.set()
        reader.join()
        (load_config(farm.config_path("EDGE01")).data_dir / "draining").touch()
        rc, drained = run(info, capsys, farm, "EDGE01", http_settings=str(node.settings),
                          http_sample_s=0)  # fmt: skip
    finally:
        stop.set()
        node.stop()
    rc, gone = run(info, capsys, farm, "EDGE01", http_settings=str(node.settings), http_sample_s=0)
    api = busy["api"]
    assert api["up"] and api["ready"] and api["reason"] is None
    assert api["address"] == f"127.0.0.1:{node.port}"
    assert api["requests_per_s"] > 0 and api["p99_s"] > 0
    assert drained["api"]["up"] and not drained["api"]["ready"]
    assert drained["api"]["reason"] == "/readyz answers 503: not ready: draining"
    assert not gone["api"]["up"] and gone["api"]["reason"].startswith(
        f"no answer on 127.0.0.1:{node.port}: "
    )
    rc, absent = run(info, capsys, farm, "EDGE01", http_settings=str(farm.root / "nosuch.toml"))
    assert absent["api"]["reason"] == f"not installed ({farm.root / 'nosuch.toml'} is missing)"


def test_digest_answers_the_totals_then_a_tables_buckets_and_refuses_a_bad_prefix(farm, capsys):
    for i in range(3):
        farm.put("EDGE01", title=f"t{i}")
    rc, totals = run(digest, capsys, farm, "EDGE01", check=True)
    assert rc == 0 and not totals["changed"]
    assert totals["digest"] == farm.store("EDGE01").digest()
    assert totals["tables"]["pages"]["rows"] == 3
    rc, pages = run(digest, capsys, farm, "EDGE01", table="pages")
    assert rc == 0 and not pages["changed"] and pages["rows"] == 3 and len(pages["records"]) == 3
    rc, bad = run(digest, capsys, farm, "EDGE01", table="pages", prefix="XY")
    assert rc == 1 and bad["failed"] and bad["rc"] == 2 and "invalid prefix 'XY'" in bad["msg"]
