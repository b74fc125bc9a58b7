"""The package's import graph has no cycle, and `import mmlu_bench` stays light.

The graph is read from the source with the standard library's `ast`: every import statement of
every module, top level or inside a function (a lazy import runs too, later), except those under
`if TYPE_CHECKING:` (never run). A cycle would mean two modules that each need the other, so
neither can be read, tested or replaced alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mmlu_bench"
HEAVY = ("torch", "transformers", "mlx", "mlx_lm", "vllm", "ray", "llama_cpp", "numpy",
         "pandas", "httpx", "huggingface_hub", "pyarrow")


def modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package's __init__)."""
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (f, is_package)
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def imports_of(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that module `name` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    here = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # `from . import x` names a module x, or an attribute
                sub = f"{target}.{a.name}"
                out.add(sub if sub in known else target)
    return out & known - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, is_package, set(mods))
            for name, (path, is_package) in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle's modules (Tarjan's strongly connected components of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    edges = graph()
    assert len(edges) > 60
    assert cycles(edges) == []


def test_the_graph_reader_sees_imports_and_cycles():
    """The check itself: it finds what the package imports, and a cycle when there is one."""
    edges = graph()
    assert "mmlu_bench.model_spec" in edges["mmlu_bench.config"]
    assert "mmlu_bench.backends" in edges["mmlu_bench.model_spec"]
    assert "mmlu_bench.schema" in edges["mmlu_bench.records"]
    assert "mmlu_bench.config" not in edges["mmlu_bench.backends"], "TYPE_CHECKING only"
    assert "mmlu_bench.backends.kv_cache" in edges["mmlu_bench.backends.hf_generate"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_the_package_loads_nothing_heavy():
    """`import mmlu_bench` and reaching its API (evaluate, load_run, compare, Result) load no
    model library, and the import itself takes little time."""
    code = ("import sys, time; t = time.perf_counter(); import mmlu_bench; "
            "took = time.perf_counter() - t; "
            "mmlu_bench.evaluate, mmlu_bench.load_run, mmlu_bench.compare, mmlu_bench.Result; "
            f"print(took, *sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1:] == [], f"imported: {out[1:]}"
    assert float(out[0]) < 0.5, f"import mmlu_bench took {float(out[0]):.3f} s"


def test_the_api_names_are_the_functions_even_after_the_modules_load():
    """`mmlu_bench.compare` stays the function once every module is imported (the comparison
    module is not called `compare`, which would replace it)."""
    import importlib

    import mmlu_bench
    from mmlu_bench import api

    for name in modules():
        if ".backends." not in name:  # a backend's module imports its model library
            importlib.import_module(name)
    assert mmlu_bench.compare is api.compare and mmlu_bench.evaluate is api.evaluate
    assert set(mmlu_bench.__all__) <= set(dir(mmlu_bench))
