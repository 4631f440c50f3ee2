"""`scaling` must load without torch: a fitting-only user never pays for it."""

import importlib
import importlib.util
import pkgutil
import subprocess
import sys

import scaling


def test_no_scaling_module_imports_torch():
    modules = sorted(m.name for m in pkgutil.walk_packages(scaling.__path__, "scaling.") if not m.name.endswith("__main__"))
    assert "scaling.fitting" in modules and "scaling.cli.fit" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import scaling.cli; scaling.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'triton'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_names_resolve():
    """Each public name is the object its defining module holds (not a stale copy, not a module
    where a function is promised), and a name the package does not export is an AttributeError."""
    import inspect

    import pytest

    assert callable(scaling.fit) and scaling.fit.__module__ == "scaling.fitting"
    importlib.import_module("scaling.fitting")  # loading the module must not shadow the function
    assert callable(scaling.fit) and not inspect.ismodule(scaling.fit)
    assert set(scaling.__all__) == set(scaling._EXPORTS) | set(scaling._MODULES)
    for name, module in scaling._EXPORTS.items():
        obj = getattr(scaling, name)
        assert obj is getattr(importlib.import_module(module), name), name
        if not inspect.ismodule(obj) and hasattr(obj, "__module__") and name not in ("LAWS",):
            assert obj.__module__ == module, (name, obj.__module__)
    for name in scaling._MODULES:
        assert getattr(scaling, name) is importlib.import_module(f"scaling.{name}"), name
    assert inspect.isclass(scaling.Store) and inspect.isclass(scaling.FitResult) and inspect.isclass(scaling.Architecture)
    assert issubclass(scaling.MoescaleError, Exception) and scaling.LAWS["chinchilla"].name == "chinchilla"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        scaling.no_such_name  # noqa: B018


def _imports(module_name: str) -> set[str]:
    """The scaling modules a module imports, at top level or inside functions (from its source)."""
    import ast

    spec = importlib.util.find_spec(module_name)
    tree = ast.parse(open(spec.origin).read())
    package = module_name.rpartition(".")[0] if not spec.origin.endswith("__init__.py") else module_name
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    modules = {m.name for m in pkgutil.walk_packages(scaling.__path__, "scaling.")}
    return {m for m in found if m in modules and m != module_name}


#: Modules whose imports must be one-way (issue 8, point 7), lowest first within each chain.
LAYERED = (
    ("scaling.datasets", "scaling.tables", "scaling.store", "scaling.ingest"),
    ("scaling.formula", "scaling.laws", "scaling.objectives", "scaling.bootstrap", "scaling.fitting"),
)


def test_imports_are_one_way():
    """Readers (datasets, tables) below the store, ingest above it; formula below laws; and no
    module of these chains reaches back to itself through any scaling module (lazy imports included)."""
    import importlib.util  # noqa: F401

    modules = sorted(m.name for m in pkgutil.walk_packages(scaling.__path__, "scaling.") if not m.name.endswith("__main__"))
    graph = {m: _imports(m) for m in modules}
    for chain in LAYERED:
        for i, low in enumerate(chain):
            above = set(chain[i + 1 :])
            assert not graph[low] & above, f"{low} imports {graph[low] & above}, which sit above it"
    for start in [m for chain in LAYERED for m in chain]:
        seen, stack = set(), list(graph[start])
        while stack:
            m = stack.pop()
            if m == start:
                raise AssertionError(f"{start} imports itself back through the module graph")
            if m not in seen:
                seen.add(m)
                stack.extend(graph.get(m, ()))
    assert "scaling.tables" in graph["scaling.store"] and "scaling.store" in graph["scaling.ingest"]
