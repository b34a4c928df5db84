"""The end-to-end tests run a playbook again only for LXD's exec symptoms.

These read recorded ansible-runner events; no fleet is needed.
"""

from __future__ import annotations

from types import SimpleNamespace

from runner_events import failures, lxd_exec_failure

LXD = {"master01", "edge01"}


def failed(host: str, task: str, **res) -> dict:
    return {"event": "runner_on_failed", "event_data": {"host": host, "task": task, "res": res}}


def run(*events, rc=2, status="failed"):
    return SimpleNamespace(events=list(events), rc=rc, status=status)


LOST = failed(
    "edge01", "Make the agent's .ssh directory",
    msg="failed to resolve remote temporary directory from ansible-tmp-1-2: "
        "`( umask 77 && mkdir -p ... )` returned empty string",
)  # fmt: skip
DROPPED = failed(
    "master01", "Render the config",
    msg="Source /root/.ansible/tmp/ansible-tmp-17-42/source not found",
)  # fmt: skip


def test_lost_exec_output_on_an_lxd_host_earns_a_rerun():
    assert "edge01: Make the agent's .ssh directory" in lxd_exec_failure(run(LOST), LXD)
    assert lxd_exec_failure(run(DROPPED), LXD)


def test_the_sshd_validation_failure_is_a_fault_not_flakiness():
    validate = failed(
        "edge01", "Allow keys only", msg="failed to validate", exit_status=255,
        stderr="Missing privilege separation directory: /run/sshd",
    )  # fmt: skip
    assert lxd_exec_failure(run(validate), LXD) is None
    assert lxd_exec_failure(run(LOST, validate), LXD) is None
    # and the failure shows why, not just "failed to validate"
    assert "Missing privilege separation directory" in failures(run(validate))[0]


def test_the_same_symptom_on_a_docker_host_is_a_fault():
    lost_on_docker = failed("edge02", "x", msg=LOST["event_data"]["res"]["msg"])
    assert lxd_exec_failure(run(lost_on_docker), LXD) is None


def test_knock_on_failures_of_a_dropped_host_do_not_block_its_rerun():
    knock_on = failed("node01", "Let in exactly the peers the policy allows",
                      msg="'trust_pubkey' is undefined")  # fmt: skip
    assert lxd_exec_failure(run(LOST, knock_on), LXD)
    assert lxd_exec_failure(run(knock_on), LXD) is None
    # the same as ansible-core 2.19 words it, for the change-signing key
    signkey = failed("node01", "List the fleet's change-signing keys",
                     msg="Task failed: object of type 'HostVarsVars' has no attribute "
                         "'trust_signkey'")  # fmt: skip
    assert lxd_exec_failure(run(LOST, signkey), LXD)
    assert lxd_exec_failure(run(signkey), LXD) is None


def test_a_hang_counts_only_inside_a_task_on_an_lxd_host():
    def start(host):
        return {"event": "runner_on_start",
                "event_data": {"host": host, "task": "t", "task_uuid": "u"}}  # fmt: skip

    assert lxd_exec_failure(run(start("edge01"), status="timeout", rc=254), LXD)
    assert lxd_exec_failure(run(start("edge02"), status="timeout", rc=254), LXD) is None
    assert lxd_exec_failure(run(status="timeout", rc=254), LXD) is None


def test_a_successful_run_is_not_rerun():
    assert lxd_exec_failure(run(rc=0, status="successful"), LXD) is None
