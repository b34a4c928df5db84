"""The modules' documentation is YAML that ansible-doc can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


def docs(path: Path) -> dict[str, str]:
    """The module's DOCUMENTATION, EXAMPLES and RETURN, read without importing it."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES",
                                                                  "RETURN"):  # fmt: skip
                    out[target.id] = node.value.value
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_each_modules_documentation_is_valid_yaml(path):
    text = docs(path)
    assert set(text) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    documentation = yaml.safe_load(text["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert isinstance(documentation.get("options", {}), dict)
    assert isinstance(yaml.safe_load(text["EXAMPLES"]), list)
    returned = yaml.safe_load(text["RETURN"])
    assert returned is None or isinstance(returned, dict)


# What a return value's documentation may hold; anything else is a stray key, as
# an unquoted comma in a flow mapping ({description: In check mode, changes ...})
# makes of the rest of a description.
RETURN_FIELDS = {"description", "returned", "type", "sample", "elements", "contains"}


def sentences(description) -> list[str]:
    return [description] if isinstance(description, str) else description


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_each_return_value_is_described_in_whole_sentences(path):
    def check(values: dict, where: str) -> None:
        for name, doc in values.items():
            assert isinstance(doc, dict) and set(doc) <= RETURN_FIELDS, f"{where}{name}: {doc}"
            lines = sentences(doc.get("description"))
            assert lines and all(isinstance(s, str) and s.endswith(".") for s in lines), (
                f"{where}{name}: {doc.get('description')!r}"
            )
            check(doc.get("contains") or {}, f"{where}{name}.")

    check(yaml.safe_load(docs(path)["RETURN"]) or {}, "")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_each_attribute_says_what_the_module_does(path):
    attributes = yaml.safe_load(docs(path)["DOCUMENTATION"])["attributes"]
    assert {"check_mode", "diff_mode"} <= set(attributes)
    for name, doc in attributes.items():
        assert doc["support"] in ("full", "partial", "none", "N/A"), name
        lines = sentences(doc.get("description"))
        assert lines and all(isinstance(s, str) and s.endswith(".") for s in lines), name
