"""HAProxy's show stat as the modules read it (plugins/module_utils/edgesync_balancer.py).
Its reading of a real HAProxy is tests/integration/test_balancer.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))

from edgesync_balancer import parse_stat, state

# HAProxy 2.6's show stat for roles/balancer's template (farm lon-a, two edges),
# its servers' status and scur edited to UP with 3 sessions and DRAIN with 1.
STAT = (Path(__file__).parent / "data" / "haproxy_show_stat.csv").read_text()


def test_only_the_backends_servers_with_their_status_and_sessions():
    assert parse_stat(STAT) == {
        "edges_lon-a": {
            "edge01": {"status": "UP", "sessions": 3},
            "edge02": {"status": "DRAIN", "sessions": 1},
        }
    }


def test_columns_are_found_by_the_header_not_by_position():
    text = "# svname,status,pxname,scur\nBACKEND,UP,b,0\nedge01,MAINT,b,\nFRONTEND,OPEN,f,0\n"
    assert parse_stat(text) == {"b": {"edge01": {"status": "MAINT", "sessions": None}}}
    assert parse_stat("# pxname,svname,status\n") == {}


@pytest.mark.parametrize("text", ["", "Unknown command: 'show stat'\n", "# pxname,scur\nb,0\n"])
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        parse_stat(text)


def test_a_socket_that_is_not_there_is_one_line(tmp_path):
    path = str(tmp_path / "haproxy.sock")
    said = f"no HAProxy runtime API at {path} (no such socket)"
    assert state(path) == {"socket": path, "backends": {}, "error": said}
