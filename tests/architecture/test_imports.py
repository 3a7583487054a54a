"""The import structure: no cycles between or inside the product packages, and the product never
imports its benchmark; the request path does not load the CLI framework.

Every import in a module counts, including those inside functions and under `if TYPE_CHECKING:`
(the same rule as the maintainers' import_cycles tool, whose algorithm is copied here so the test
runs on a clean clone). A cycle shows a concept in the wrong module: move it down to a module both
sides can import (README "Layout").
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("custom_router", "litellm_compat", "hooks", "proxy_config", "gateway", "emulators")


def modules(root: Path, packages: tuple[str, ...] = PRODUCT) -> dict[str, Path]:
    found = {}
    for top in packages:
        for path in sorted((root / top).rglob("*.py")):
            if any(part.startswith(".") or part == "templates" for part in path.relative_to(root).parts):
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """Dotted names `name` imports (relative imports resolved)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def edges(found: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in found.items():
        out = set()
        for target in imported(name, path):
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
        graph[name] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return result


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v, ws in graph.items():
        out.setdefault(v.split(".")[0], set()).update(w.split(".")[0] for w in ws if w.split(".")[0] != v.split(".")[0])
    return out


def test_the_cycle_finder_finds_a_cycle_and_passes_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_imports_inside_functions(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    graph = edges(modules(tmp_path, ("pkg",)))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg", "pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_inside_the_product_packages():
    found = cycles(edges(modules(ROOT)))
    assert found == [], "import cycles (move the shared concept down to a module both sides import): " + \
        "; ".join(" -> ".join(c) for c in found)


def test_no_import_cycle_between_the_product_packages():
    assert cycles(package_graph(edges(modules(ROOT)))) == []


def test_the_product_never_imports_the_benchmark():
    offenders = sorted(name for name, path in modules(ROOT).items()
                       if any(t == "bench" or t.startswith("bench.") for t in imported(name, path)))
    assert offenders == [], f"{offenders} import bench/; the benchmark imports the product, never the reverse"


def test_the_routing_policy_imports_only_the_standard_library_and_itself():
    outside = sorted({(name, t) for name, path in modules(ROOT, ("custom_router",)).items()
                      for t in imported(name, path)
                      if t and t.split(".")[0] not in sys.stdlib_module_names and t.split(".")[0] != "custom_router"})
    assert outside == []


def test_the_request_path_does_not_load_the_cli_framework():
    """The app, the front door, the error layer and every hook config.yaml names load without typer."""
    code = ("import sys, gateway.gate, gateway.errors, gateway.cors, gateway.logs, hooks.auth, hooks.routing, "
            "hooks.usage, hooks.budgets, hooks.cache, hooks.streams, hooks.ledger, hooks.metrics; "
            "print(sorted(m for m in sys.modules if m == 'typer' or m.startswith(('typer.', 'gateway.cli', 'bench'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_every_product_package_is_installed_and_in_the_image():
    """A new package must be in pyproject.toml (so `pip install .` ships it) and copied by the Dockerfile."""
    import tomllib

    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert tops == set(PRODUCT)
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    subpackages = {".".join(p.parent.relative_to(ROOT).parts) for top in PRODUCT for p in (ROOT / top).rglob("__init__.py")}
    assert subpackages - listed == set()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert [top for top in PRODUCT if f"COPY {top} ./{top}\n" not in dockerfile] == []
