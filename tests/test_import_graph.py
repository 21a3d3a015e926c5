"""clm_lib's import graph: no module imports itself round a loop, and only ``clm_lib/airflow/`` imports Airflow.

Read from the source with ``ast``, so every import counts wherever it stands: at the top, inside a function, under
``TYPE_CHECKING``. A loop that only a function-level import or a type hint closes still ties the modules together:
neither can be understood, moved or tested without the other.
Built-ins a registry (:mod:`clm_lib.plugins`) loads by name are not imports and are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "clm_lib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted((REPO / PACKAGE).rglob("*.py"))}


def _imports() -> dict[str, list[list[str]]]:
    """clm_lib module -> one list per import anywhere in it: the dotted names it may import.

    ``import a.b, c`` gives ``["a.b"]`` and ``["c"]``; ``from pkg import x, y`` gives ``["pkg", "pkg.x",
    "pkg.y"]`` (``x`` may be a module or a name defined in ``pkg``); relative imports are resolved against the
    module's package.
    """
    found: dict[str, list[list[str]]] = {}
    for module, path in _modules().items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        statements = []
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                statements.extend([alias.name] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                parts = package[: len(package) - node.level + 1] if node.level else []
                base = ".".join(parts + ([node.module] if node.module else []))
                statements.append([base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")])
        found[module] = statements
    return found


def _import_graph() -> dict[str, set[str]]:
    """clm_lib module -> the clm_lib modules it imports.

    ``from pkg import name`` is an arrow to ``pkg.name`` where that is a module, and to ``pkg`` (its
    ``__init__``) where ``name`` is defined there.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, statements in _imports().items():
        for names in statements:
            base, members = names[0], names[1:]
            submodules = [name for name in members if name in modules]
            targets = submodules if members and len(submodules) == len(members) else [base, *submodules]
            graph[module].update(t for t in targets if t in modules and t != module)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return circles


def _describe(circle: list[str], graph: dict[str, set[str]]) -> str:
    members = set(circle)
    arrows = [f"  {a} -> {b}" for a in circle for b in sorted(graph[a] & members)]
    return f"{len(circle)} modules: {', '.join(circle)}\n" + "\n".join(arrows)


def test_the_graph_is_read():
    graph = _import_graph()
    assert "clm_lib.config" in graph["clm_lib.training.recipe"]
    assert "clm_lib.plugins" in graph["clm_lib.training.strategies"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_clm_lib_has_no_import_circle():
    graph = _import_graph()
    circles = _circles(graph)
    assert not circles, "import circles in clm_lib (A -> B: A imports B):\n" + "\n".join(
        _describe(circle, graph) for circle in circles
    )


def test_only_clm_lib_airflow_imports_airflow():
    offenders = [
        f"{module}: {names[0]}"
        for module, statements in sorted(_imports().items())
        if not (module + ".").startswith(f"{PACKAGE}.airflow.")
        for names in statements
        if names[0].split(".")[0] == "airflow"
    ]
    assert offenders == []


def _plugin_imports(package: str) -> dict[str, set[str]]:
    """plugins/<package> module -> the top two levels of every name it imports (``clm_api.v1``, ``clm_lib.x``)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "plugins" / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_screens_never_import_the_rest_api():
    """Screens and routes call the same ``clm_lib`` functions; a screen reaching into ``clm_api`` would make the
    UI depend on the API's models and FastAPI, and hide logic that belongs in ``clm_lib``."""
    found = _plugin_imports("clm_ui")
    assert "plugins/clm_ui/views_setup.py" in found  # the scan sees the views
    assert any(n.startswith("clm_lib.") for names in found.values() for n in names)
    offenders = sorted(f"{m}: {n}" for m, names in found.items() for n in names if n.split(".")[0] == "clm_api")
    assert offenders == []
