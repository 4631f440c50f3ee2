"""`scaling` must load without torch: a fitting-only user never pays for it."""

import importlib
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
    assert callable(scaling.fit) and scaling.fit.__module__ == "scaling.fitting"
    importlib.import_module("scaling.fitting")  # loading the module must not shadow the function
    assert callable(scaling.fit)
    for name in scaling.__all__:
        assert getattr(scaling, name) is not None
