"""Make tests/data/schema2/: a node's data directory written by release 0.1.0
(schema 2), which the migration tests open with the code at hand.

Run with the old release's Python, as its tests' data was made:

    build/releases/0.1.0/venv/bin/python tests/data/make_schema2.py tests/data/schema2

(`python scripts/releases.py agent 0.1.0` builds that virtualenv.) Writes
edgesync.db, signing_key(.pub) and expect.json (what the data must read as).
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import edgesync
from edgesync.config import dump, load
from edgesync.store import Store

PAGES = {"columns": ["section", "title", "body"], "slug": ["section", "title"]}

out = Path(sys.argv[1])
assert edgesync.__version__ == "0.1.0", edgesync.__version__
with tempfile.TemporaryDirectory() as tmp:
    config = Path(tmp) / "edge01.toml"
    node = {"name": "EDGE01", "location": "LON", "role": "edge", "farm": "a",
            "data_dir": "data", "redis_url": "redis://127.0.0.1:1/0"}  # fmt: skip
    config.write_text(dump({"node": node, "peers": {}, "tables": {"pages": PAGES}}))
    store = Store(load(config))
    store.init()
    made = [store.put("pages", {"section": "news", "title": f"Story {i}", "body": "x" * i})
            for i in range(20)]  # fmt: skip
    store.put("pages", {"id": made[3]["id"], "title": "Story three, edited"})
    store.delete("pages", made[4]["id"])
    expect = {
        "digest": store.digest(),
        "rows": store.rows("pages"),
        "edited": store.get("pages", made[3]["id"]),
        "deleted": made[4]["id"],
        "slug": made[7]["slug"],
        "changes": store.log.max_seq(),
    }
    store.close()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("edgesync.db", "signing_key", "signing_key.pub"):
        shutil.copy(Path(tmp) / "data" / name, out / name)
    (out / "expect.json").write_text(json.dumps(expect, indent=1) + "\n")
print(f"{out}: schema 2, {expect['rows']} rows, {expect['changes']} changes")
