#!/usr/bin/env bash
# Installs what edgesync needs on a Debian 12 machine (run as root), idempotently:
# Debian packages, then a virtualenv in .venv with edgesync and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in redis-server openssh-server openssh-client sqlite3 python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d stops the packages from starting system-wide daemons we don't use:
    # edgesync's demo and tests run their own redis-server and sshd on loopback.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import edgesync, pytest, hypothesis' 2>/dev/null \
    || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi
