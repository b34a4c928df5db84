#!/usr/bin/env bash
# The main job: set up, build the local fleet (inventory/local) with site.yml,
# then show it syncing: records made on every edge, found at the master, digests equal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ansible-playbook playbooks/site.yml (validate, image, provision, agent, trust, timers)"
start=$(date +%s)
ansible-playbook playbooks/site.yml
echo "site.yml took $(( $(date +%s) - start )) s"
exec .venv/bin/python scripts/demo_fleet.py
