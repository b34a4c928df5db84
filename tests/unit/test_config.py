import pytest

from edgesync.config import load, parse
from edgesync.errors import ConfigError

GOOD = {
    "node": {
        "name": "EDGE01",
        "location": "LON",
        "role": "edge",
        "farm": "lon-a",
        "data_dir": "/var/lib/edgesync",
    },
    "tables": {"pages": {"columns": ["section", "title", "body"], "slug": ["section", "title"]}},
}


def with_node(**changes):
    node = {**GOOD["node"], **changes}
    return {**GOOD, "node": {k: v for k, v in node.items() if v is not None}}


def test_a_good_config_parses_with_defaults():
    cfg = parse(GOOD)
    assert cfg.name == "EDGE01" and cfg.farm == "lon-a"
    assert cfg.redis_url == "redis://127.0.0.1:6379/0"
    assert cfg.max_value_bytes == 1024 * 1024
    assert cfg.tables["pages"].slug == ("section", "title")
    assert (cfg.connect_timeout_s, cfg.idle_timeout_s, cfg.session_timeout_s) == (10, 60, 900)


def test_a_push_mark_on_a_peer_the_policy_forbids_pushing_to_is_refused(tmp_path):
    from edgesync.agent import open_store

    path = tmp_path / "c.toml"
    path.write_text(
        '[node]\nname="EDGE01"\nlocation="LON"\nrole="edge"\nfarm="a"\ndata_dir="d"\n'
        '[peers.MASTER01]\nurl="local:m.toml"\nrole="master"\npush=true\n'
    )
    with pytest.raises(ConfigError, match="peers.MASTER01.push = true: edges push only"):
        open_store(path)


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        (with_node(name="edge01"), "node.name = 'edge01'"),
        (with_node(name="A" * 17), "node.name"),
        (with_node(location="L"), "node.location = 'L'"),
        (with_node(role="boss"), "node.role = 'boss'"),
        (with_node(farm=None), "node.farm is missing"),
        (with_node(data_dir=None), "node.data_dir is missing"),
        (with_node(max_value_bytes=0), "node.max_value_bytes = 0"),
        (with_node(redis_url="http://x"), "node.redis_url = 'http://x'"),
        (with_node(colour="red"), "node.colour = 'red': unknown key"),
        ({**GOOD, "tables": {"Pages": {"columns": ["a"]}}}, "tables.Pages"),
        ({**GOOD, "tables": {"pages": {"columns": []}}}, "tables.pages.columns"),
        ({**GOOD, "tables": {"pages": {"columns": ["id"]}}}, "tables.pages.columns = 'id'"),
        ({**GOOD, "tables": {"pages": {"columns": ["a"], "slug": ["b"]}}}, "tables.pages.slug"),
        ({"tables": {}}, "[node] section is missing"),
        (with_node(idle_timeout_s=0), "node.idle_timeout_s = 0"),
        (with_node(max_clock_skew_ms=10), "node.max_clock_skew_ms = 10"),
        (with_node(max_early=0), "node.max_early = 0"),
        (with_node(max_early=True), "node.max_early = True"),
        (with_node(session_timeout_s="1h"), "node.session_timeout_s = '1h'"),
        (with_node(connect_timeout_s=True), "node.connect_timeout_s = True"),
        (
            {
                **GOOD,
                "peers": {
                    "EDGE02": {"url": "local:x", "role": "edge", "farm": "lon-a", "push": "yes"}
                },
            },
            "peers.EDGE02.push = 'yes'",
        ),
    ],
)
def test_an_invalid_config_names_the_key_and_the_value(doc, named):
    with pytest.raises(ConfigError) as err:
        parse(doc)
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_toml_and_missing_files_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "missing.toml")


def test_relative_data_dir_is_taken_from_the_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[node]\nname="M1"\nlocation="LON"\nrole="master"\ndata_dir="d"\n')
    assert load(path).data_dir == tmp_path / "d"


def test_dump_writes_what_parse_reads(tmp_path):
    import tomllib

    from edgesync.config import dump

    data = {
        "node": {"name": "NODE01", "location": "LON", "role": "node", "data_dir": "d",
                 "redis_url": "redis://127.0.0.1:1/0", "trusted": ["MASTER01"],
                 "batch_size": 7, "farm": None},
        "peers": {"MASTER01": {"url": 'local:/a "quoted" path.toml', "role": "master"}},
        "tables": {"pages": {"columns": ["title", "body"], "slug": ["title"]}},
    }  # fmt: skip
    cfg = parse(tomllib.loads(dump(data)), tmp_path / "c.toml")
    assert (cfg.name, cfg.role, cfg.trusted, cfg.batch_size) == ("NODE01", "node", ("MASTER01",), 7)
    assert cfg.peers["MASTER01"].url == 'local:/a "quoted" path.toml'
    assert cfg.tables["pages"].slug == ("title",)
