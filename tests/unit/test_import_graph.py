"""The provider's modules import one another one way only, and the export core stays free of Airflow.

Read statically (``ast``), so every import counts: module level, inside functions, and under
``TYPE_CHECKING`` alike. A cycle means two modules each need the other, usually a shared piece that
belongs a floor lower (as ``batch_counts``, now in ``export/confirm.py`` below both the batch sensor and
its trigger). The export core (``export/``, ``lake/``, ``api/``) must run without Airflow, so neither it
nor anything it imports from this package may import ``airflow``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "airflow_provider_omnisend"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
CORE = ("export", "lake", "api")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports (absolute names; this package's modules resolved to files)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_reader_sees_imports_of_every_kind() -> None:
    edges = graph()
    assert f"{PACKAGE}.export.confirm" in edges[f"{PACKAGE}.sensors.batches"]  # absolute, module level
    assert f"{PACKAGE}.hooks.omnisend" in edges[f"{PACKAGE}.triggers.batches"]  # inside a function
    assert f"{PACKAGE}.testing.emulator.config" in edges[f"{PACKAGE}.testing.emulator.app"]  # relative
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_export_core_imports_no_airflow() -> None:
    edges = graph()
    core = {m for m in edges if m.split(".")[1:2] and m.split(".")[1] in CORE}
    assert core, "the export core's modules were not found"
    reached, todo = set(core), list(core)
    while todo:  # everything the core pulls in from this package
        for dep in edges[todo.pop()]:
            if dep in edges and dep not in reached:
                reached.add(dep)
                todo.append(dep)
    offenders = {m: sorted(d for d in edges[m] if d == "airflow" or d.startswith("airflow."))
                 for m in sorted(reached)}
    assert not {m: d for m, d in offenders.items() if d}
    assert reached <= core | {PACKAGE}, sorted(reached - core)


# ---------------------------------------------------------------- declared dependencies
#: import name -> distribution name, where they differ
DISTRIBUTIONS = {"airflow": "apache-airflow", "requests_toolbelt": "requests-toolbelt", "yaml": "pyyaml"}
#: optional at run time: imported only where that extra's feature is used, or only when installed
OPTIONAL = {"deltalake": "delta", "uvloop": None, "psutil": "test", "psycopg2": None, "redis": "redis",
            # the OpenLineage client, installed with apache-airflow-providers-openlineage (lineage.py)
            "openlineage": None}


def declared() -> tuple[set[str], dict[str, set[str]]]:
    import re
    import tomllib

    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]

    def names(specs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}

    return names(project["dependencies"]), {k: names(v) for k, v in project["optional-dependencies"].items()}


def third_party(module_prefix: str) -> set[str]:
    import sys

    tops = {dep.split(".")[0] for name, deps in graph().items() if name.startswith(module_prefix)
            for dep in deps}
    return {t for t in tops if t not in sys.stdlib_module_names and t != PACKAGE}


def test_every_direct_import_is_declared_and_the_emulator_server_needs_its_extra() -> None:
    required, extras = declared()
    emulator = f"{PACKAGE}.testing.emulator"
    everything = third_party(PACKAGE) - set(OPTIONAL)
    undeclared = {t for t in everything if DISTRIBUTIONS.get(t, t) not in required | extras["emulator"]}
    assert not undeclared, f"imported but not declared in pyproject.toml: {sorted(undeclared)}"
    # the emulator's server-only dependencies are an extra, and nothing outside the emulator needs them
    assert {"aiohttp", "jsonschema"} <= extras["emulator"] and not {"aiohttp", "jsonschema"} & required
    outside = {t for name, deps in graph().items() if not name.startswith(emulator)
               for t in (d.split(".")[0] for d in deps)}
    assert not {"aiohttp", "jsonschema"} & outside
    for name, extra in OPTIONAL.items():
        assert extra is None or name in extras[extra] or DISTRIBUTIONS.get(name, name) in extras[extra]
