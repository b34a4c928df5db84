"""The agent's modules import one way: no cycle, and no import inside a function
that could hide one (a module loaded when first used, lazy.py, counts as
imported at the top)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgesync

PACKAGE = Path(edgesync.__file__).parent


def _imports() -> dict[str, tuple[set[str], list[str]]]:
    """module -> (edgesync modules it imports at the top, imports made inside functions)."""
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        top: set[str] = set()
        # Top-level imports, those under `if TYPE_CHECKING:` included: a type
        # is a dependency too.
        blocks = (ast.If, ast.Try)
        body = [n for n in tree.body if not isinstance(n, blocks)]
        body += [n for block in tree.body if isinstance(block, blocks) for n in block.body]
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    top.add(node.module.split(".")[0])
                else:
                    top.update(a.name for a in node.names)
            # Absolute imports of the package count the same.
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgesync"):
                rest = node.module.split(".")[1:]
                top.update(rest[:1] or [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                top.update(a.name.split(".")[1] for a in node.names
                           if a.name.startswith("edgesync."))  # fmt: skip
            # A module loaded when first used (lazy.py) is imported all the same.
            elif (name := _lazy_name(node)) is not None and name.startswith("edgesync."):
                top.add(name.split(".")[1])
        inner = [
            f"{path.stem}:{n.lineno}"
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
            if isinstance(n, ast.Import | ast.ImportFrom) or _lazy_name(n) is not None
        ]
        out[path.stem] = (top - {"__init__"}, inner)
    return out


def _lazy_name(node: ast.AST) -> str | None:
    """The module ``name = lazy("module")`` names (lazy.py), if ``node`` is that."""
    call = node.value if isinstance(node, ast.Assign | ast.Expr) else node
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "lazy"
        and call.args
        and isinstance(call.args[0], ast.Constant)
    ):
        return call.args[0].value
    return None


def test_no_module_imports_inside_a_function():
    assert [i for _top, inner in _imports().values() for i in inner] == []


def test_the_import_graph_has_no_cycle():
    graph = {m: top for m, (top, _inner) in _imports().items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_nothing_below_the_store_imports_the_store_or_sync():
    graph = {m: top for m, (top, _inner) in _imports().items()}
    below = ["db", "changelog", "merge", "slug_settlement", "reads", "refusals", "relay",
             "outbox", "changes"]  # fmt: skip
    for module in below:
        assert not graph[module] & {"store", "sync", "agent", "cli"}, module


def _web_imports() -> dict[str, tuple[set[str], list[str]]]:
    """The same for the HTTP face (edgesync/web): module -> (what it imports from
    edgesync, one level up or beside it; imports inside functions)."""
    out = {}
    for path in sorted((PACKAGE / "web").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level in (1, 2):
                where = "web." if node.level == 1 else ""
                names = [node.module] if node.module else [a.name for a in node.names]
                top.update(where + n.split(".")[0] for n in names)
        inner = [
            f"web/{path.stem}:{n.lineno}"
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
            if isinstance(n, ast.Import | ast.ImportFrom)
        ]
        out[path.stem] = (top, inner)
    return out


def test_the_http_face_stands_above_the_store_and_nothing_below_imports_it():
    for module, (top, _inner) in _imports().items():
        assert "web" not in top, f"{module} imports the HTTP face"
    web = _web_imports()
    assert [i for _top, inner in web.values() for i in inner] == []
    graph = {m: {t[4:] for t in top if t.startswith("web.")} for m, (top, _i) in web.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
