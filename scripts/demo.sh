#!/usr/bin/env bash
# The main job: set up, build the local fleet (inventory/local) with edgectl up
# (site.yml), then show it syncing: records made on every edge, one edgectl
# sync, found at the master and at each farm's address (its balancer),
# edgectl status, the graph, edgectl verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== edgectl up (site.yml: validate, image, provision, access, agent, trust, timers, api, balancers)"
edgectl up
exec .venv/bin/python scripts/demo_fleet.py
