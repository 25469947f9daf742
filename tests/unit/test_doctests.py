"""Every ``>>>`` example in the programs' docstrings runs against the imported module.

pytest's ``--doctest-modules`` collects source files, and mypyc compiles the
request path's modules into extensions that keep no docstrings (setup.py).
So the examples are read from each module's source and run with the imported
module's names: the compiled code where it is compiled, the same way for all.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("rampart_common", "rampart_operator", "rampart_sidecar", "rampart_backup")


def modules() -> list[str]:
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found.append(name)
        found += [
            m.name
            for m in pkgutil.walk_packages(package.__path__, f"{name}.")
            if not m.name.endswith(".__main__")  # runs the program when imported
        ]
    return sorted(found)


def doctests(name: str) -> list[doctest.DocTest]:
    """The examples in the source of module ``name``, bound to the imported module."""
    module = importlib.import_module(name)
    # From the package's folder: a compiled module's __file__ need not be beside its source.
    top, *rest = name.split(".")
    base = Path(importlib.import_module(top).__path__[0]).joinpath(*rest)
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    tree = ast.parse(source.read_text())
    parser = doctest.DocTestParser()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        text = ast.get_docstring(node, clean=False)
        if text and ">>>" in text:
            where = getattr(node, "name", name)
            line = getattr(node, "lineno", 0)
            test = parser.get_doctest(
                text, dict(vars(module)), f"{name}.{where}", str(source), line
            )
            found.append(test)
    return found


@pytest.mark.parametrize("name", modules())
def test_the_examples_in_the_docstrings_hold(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctests(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found_in_compiled_and_plain_modules_alike() -> None:
    """Modules known to carry examples show them, or the test above proves nothing."""
    for name in (
        "rampart_common.durations",  # plain Python
        "rampart_operator.alertproof",
        "rampart_sidecar.policies.retry",  # compiled by mypyc: no docstrings of its own
    ):
        assert sum(len(t.examples) for t in doctests(name)) > 0, name
