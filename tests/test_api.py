"""The API is deliberate: every module says what it exports and documents it (ruff's RUF022
keeps every ``__all__`` sorted)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import bot4

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(bot4.__path__, "bot4.")
    if not info.name.endswith(".__main__") and not info.name.startswith("bot4.shm._native")
)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_what_it_exports_and_documents_it(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    if exported is None:
        # a package's __init__ or an application module may export nothing
        assert not [
            n
            for n in vars(module)
            if not n.startswith("_")
            and inspect.isfunction(getattr(module, n))
            and getattr(module, n).__module__ == name
        ], f"{name} defines public functions without __all__"
        return
    for attr in exported:
        value = getattr(module, attr)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{name}.{attr} has no docstring"


def test_the_library_never_imports_the_applications() -> None:
    import ast
    from pathlib import Path

    root = Path(bot4.__file__).parent
    for path in root.rglob("*.py"):
        if "_cli" in path.parts or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot4._cli"):
                pytest.fail(f"{path.relative_to(root.parent)} imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name.startswith("bot4._cli") for a in node.names):
                pytest.fail(f"{path.relative_to(root.parent)} imports the application")
