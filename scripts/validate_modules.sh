#!/usr/bin/env bash
# ansible-test's validate-modules on the custom modules: their DOCUMENTATION,
# RETURN and attributes, checked against each other and their argument specs.
# Prints the findings and fails on any.
#
# ansible-test wants a collection: plugins/ is copied into one in a temporary
# directory, where the modules' names for their doc fragment and module_utils
# (found through ansible.cfg in this repo) become the collection's names.
# ansible-test runs the test in a virtualenv of its own (kept in
# ~/.ansible/test/venv); to put pip in it, it would download get-pip.py. For
# the run, a stand-in takes its place: pip from ensurepip, then a pip install of
# what it is asked for from the index pip is configured with.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/.venv/bin"
[ -x "$bin/ansible-test" ] || { echo "validate_modules.sh: no .venv/bin/ansible-test (run scripts/setup.sh)" >&2; exit 1; }

tmp=$(mktemp -d)
get_pip=""
trap 'rm -rf "$tmp" ${get_pip:+"$get_pip" "${get_pip%/*}/__pycache__"}' EXIT

collection="$tmp/ansible_collections/edgesync/edgesync"
mkdir -p "$collection/tests/sanity"
cp -r plugins "$collection/"
cat >"$collection/galaxy.yml" <<EOF
namespace: edgesync
name: edgesync
version: $(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/edgesync/__init__.py)
EOF
sed -i -e 's/^\(extends_documentation_fragment: \)\[edgesync\]$/\1[edgesync.edgesync.edgesync]/' \
    -e 's/^from ansible\.module_utils\.edgesync_/from ansible_collections.edgesync.edgesync.plugins.module_utils.edgesync_/' \
    "$collection"/plugins/modules/*.py

versions=$("$bin/python" -c 'import sys, types
from ansible.release import __version__
from ansible_test._internal.python_requirements import get_venv_packages
python = types.SimpleNamespace(version="%d.%d" % sys.version_info[:2])
print(".".join(__version__.split(".")[:2]), get_venv_packages(python)["pip"])')
read -r core pip_version <<<"$versions"

# edgesync is MIT: none of its plugins carries the GPLv3 header asked of Ansible's own.
for plugin in plugins/modules/*.py plugins/inventory/*.py; do
    echo "$plugin validate-modules:missing-gplv3-license"
done >"$collection/tests/sanity/ignore-$core.txt"

cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -e "$cache" ]; then
    mkdir -p "${cache%/*}"
    get_pip="$cache"
    cat >"$cache" <<'EOF'
# scripts/validate_modules.sh's stand-in for get-pip.py, removed after its run.
import runpy, subprocess, sys
# ensurepip in a process of its own: it turns pip's config off in the process it runs in.
subprocess.run([sys.executable, "-m", "ensurepip"], check=True)
sys.argv[1:] = ["install", *(a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel"))]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
EOF
fi

cd "$collection"
"$bin/ansible-test" sanity --test validate-modules --color no
