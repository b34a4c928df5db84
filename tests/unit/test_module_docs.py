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
