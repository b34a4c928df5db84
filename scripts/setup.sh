#!/usr/bin/env bash
# Installs what edgesync needs on a Debian 12 machine (run as root), idempotently:
# Debian packages, a virtualenv in .venv with edgesync, Ansible and the test
# tools, then a running Docker engine and LXD (an existing installation and its
# own containers are left as they are).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in redis-server openssh-server openssh-client sqlite3 python3-venv \
    docker.io lxd mmdebstrap dnsmasq-base iptables faketime graphviz wrk \
    chromium chromium-driver haproxy; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# apt-get, waiting (15 minutes at most) while another install holds the package
# manager's lock instead of failing at once. DPkg::Lock::Timeout covers dpkg's
# lock; the lists lock of `apt-get update` is waited for by the loop.
apt_wait() {
    local out waited=0
    while :; do
        if out=$(apt-get -o DPkg::Lock::Timeout=900 "$@" 2>&1); then
            return 0
        fi
        if ! grep -qE "Could not get lock|Unable to acquire|Unable to lock" <<<"$out" \
            || ((waited >= 900)); then
            printf '%s\n' "$out" >&2
            echo "setup: apt-get $* failed" >&2
            return 1
        fi
        if ((waited == 0)); then echo "setup: waiting for the package manager's lock (another install is running)"; fi
        sleep 5
        waited=$((waited + 5))
    done
}

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_wait update -qq
    # policy-rc.d keeps the packages from starting system-wide daemons here; the
    # demo and tests start the ones they need themselves.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt_wait install -y -qq --no-install-recommends "${need[@]}"
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import edgesync, pytest, hypothesis, ansible_runner' 2>/dev/null \
    || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: installing edgesync, Ansible and the test tools into .venv (a minute or two)"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test,fleet]'
    touch .venv/.installed
fi

# Docker: start the engine unless one answers already.
if ! docker info >/dev/null 2>&1; then
    echo "setup: starting the Docker engine"
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        mkdir -p /var/log/edgesync
        nohup dockerd >/var/log/edgesync/dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start" >&2; exit 1; }
fi

# LXD: start the daemon unless it answers; give it a storage pool of ours if it
# has none (lxd init --auto cannot pick a subnet here, so no default network).
if ! lxc info >/dev/null 2>&1; then
    echo "setup: starting LXD"
    if [ -d /run/systemd/system ]; then
        systemctl start lxd
    else
        mkdir -p /var/log/edgesync
        nohup lxd --group root --logfile /var/log/edgesync/lxd.log >/dev/null 2>&1 &
    fi
    lxd waitready --timeout 60
fi
if ! lxc storage list --format csv | grep -q .; then
    lxd init --preseed <<'PRESEED'
storage_pools:
- name: edgesync
  driver: dir
PRESEED
fi
