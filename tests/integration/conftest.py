import pytest
from farm import SEVEN, Farm


@pytest.fixture
def farm(tmp_path, redis_server):
    """The seven-node farm of tests/integration/farm.py, on a clean Redis."""
    redis_server.client().flushall()
    f = Farm(tmp_path, redis_server.url, SEVEN)
    yield f
    f.close()
