"""Facts the Ansible side shares are defined once and used as defined."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgesync import topology

REPO = Path(__file__).resolve().parents[2]
FACTS = yaml.safe_load((REPO / "playbooks/group_vars/all/edgesync.yml").read_text())


def test_sync_yml_runs_every_stage_of_the_plan_in_order_with_the_right_module():
    play = yaml.safe_load((REPO / "playbooks/sync.yml").read_text())[0]
    ran = []
    for task in play["tasks"]:
        module = next((k for k in task if k.startswith("edgesync_")), None)
        if module is None:  # the closing task that names the masters out of reach
            continue
        stage = task["loop"].split("'equalto', '")[1].split("'")[0]
        ran.append((stage, module.removeprefix("edgesync_")))
    assert ran == [(name, action) for name, _who, action, _whom in topology.STAGES]


def test_the_modules_defaults_are_the_shared_facts():
    import sys

    sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
    from edgesync_agent import COMMON_ARGS

    assert COMMON_ARGS["config"]["default"] == FACTS["edgesync_config_path"]
    assert COMMON_ARGS["agent"]["default"] == FACTS["edgesync_agent"]
    assert COMMON_ARGS["user"]["default"] == FACTS["edgesync_user"]
    fragment = (REPO / "plugins/doc_fragments/edgesync.py").read_text()
    for key in ("edgesync_config_path", "edgesync_agent", "edgesync_user"):
        assert f"default: {FACTS[key]}\n" in fragment, key


def test_the_agent_command_lives_in_the_install_root():
    assert FACTS["edgesync_agent"] == f"{FACTS['edgesync_root']}/current/bin/edgesync"


def test_the_session_deadlines_are_the_agents_defaults():
    from edgesync.config import TIMEOUTS

    assert {k: FACTS[f"edgesync_{k}"] for k in TIMEOUTS} == TIMEOUTS


def test_the_info_module_reads_the_apis_settings_where_the_api_role_writes_them():
    info = (REPO / "plugins/modules/edgesync_info.py").read_text()
    path = FACTS["edgesync_http_settings_path"]
    assert f'http_settings=dict(type="path", default="{path}")' in info
    assert f"    default: {path}\n" in info  # its DOCUMENTATION
    # beside the agent's config, as the tokens file
    config_dir = FACTS["edgesync_config_path"].rsplit("/", 1)[0]
    assert {path.rsplit("/", 1)[0], FACTS["edgesync_http_tokens_path"].rsplit("/", 1)[0]} == {
        config_dir
    }


def test_the_api_listens_on_the_fleets_port_unless_told_otherwise():
    defaults = yaml.safe_load((REPO / "roles/api/defaults/main.yml").read_text())
    assert defaults["api_port"] == "{{ edgesync_http_port }}"
    assert 0 < FACTS["edgesync_http_port"] < 65536
