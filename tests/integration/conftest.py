import pytest
from farm import SEVEN, Farm

from edgesync.localsshd import LocalSshd


@pytest.fixture
def make_farm(tmp_path, redis_server):
    """Farms of real agents in this test's directory, on a clean Redis:
    ``make_farm(nodes, **node_keys)``; closed after the test."""
    redis_server.client().flushall()
    made: list[Farm] = []

    def make(nodes: dict, **node_keys) -> Farm:
        made.append(Farm(tmp_path, redis_server.url, nodes, **node_keys))
        return made[-1]

    yield make
    for f in made:
        f.close()


@pytest.fixture
def farm(make_farm):
    """The seven-node farm of tests/integration/farm.py."""
    return make_farm(SEVEN)


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on a free loopback port (Farm.over_ssh lets a node in)."""
    try:
        server = LocalSshd(tmp_path / "sshd").start()
    except RuntimeError as exc:
        pytest.fail(f"{exc}: run the README's test command")
    yield server
    server.stop()
