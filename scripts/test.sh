#!/usr/bin/env bash
# The test command: set up, lint, run every test, run the benchmarks in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== lint"
.venv/bin/ruff check src tests benchmarks scripts plugins
.venv/bin/ruff format --check src tests benchmarks scripts plugins

echo "== ansible: syntax and lint (production profile)"
export PATH="$PWD/.venv/bin:$PATH"
for playbook in playbooks/*.yml; do
    ansible-playbook --syntax-check "$playbook" >/dev/null
done
ansible-lint --offline playbooks/ roles/

echo "== ansible-test validate-modules (the custom modules' docs and arguments)"
bash scripts/validate_modules.sh

echo "== the users' CI workflow (actionlint)"
actionlint

echo "== tests (unit, integration, then end to end on real LXD and Docker)"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"

echo "== benchmarks (quick; full figures: run them without --quick)"
.venv/bin/python benchmarks/bench_store.py --quick
(cd benchmarks && ../.venv/bin/python bench_sync.py --quick)
# The fleet's commands on the local fleet the tests leave (no teardown; the
# fleet-size curve replaces the local fleet:
# .venv/bin/python benchmarks/bench_fleet.py --sizes 4,8,16).
.venv/bin/python benchmarks/bench_fleet.py --quick
# The HTTP face: the seed's 230 -> 43 ms over simulated links, latency under load,
# throughput beside its floors (it makes build/bench-venv once: Datasette, uvicorn,
# Starlette, for comparison only).
.venv/bin/python benchmarks/bench_latency.py --quick
