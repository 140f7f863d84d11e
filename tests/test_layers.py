"""Tooling depends on the product, never the reverse: no module of a product
package imports the lab, the demo, the benchmarks, the local processes or
the CLI (the top layer). Read from the source with ast, so imports inside
functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

import xdsr

SRC = Path(xdsr.__file__).parent
PRODUCT = ("agent", "api", "apiserver", "dataplane", "maglev", "model", "net", "octavia", "operator", "store", "web")
TOOLING = ("xdsr.lab", "xdsr.demo", "xdsr.bench", "xdsr.local", "xdsr.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module an import statement of module `name` names, made absolute."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from xdsr import lab` imports a module too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _is_tooling(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOOLING)


def product_modules() -> list[Path]:
    files = [SRC / "__init__.py", SRC / "paths.py"]
    for pkg in PRODUCT:
        assert (SRC / pkg).is_dir(), f"no product package {pkg}"
        files += sorted((SRC / pkg).rglob("*.py"))
    return files


def test_the_walk_sees_relative_and_nested_imports() -> None:
    # Source shaped like a product module's, to show the check can fail.
    src = "def f():\n    from ..lab import netns\n    import xdsr.bench.scenarios\nfrom . import core\n"
    found = imported_modules(src, "xdsr.agent.probe")
    assert {"xdsr.lab", "xdsr.lab.netns", "xdsr.bench.scenarios", "xdsr.agent.core"} <= found
    assert _is_tooling("xdsr.lab.netns") and not _is_tooling("xdsr.labels")


def test_product_packages_import_no_tooling() -> None:
    arrows = []
    for path in product_modules():
        name = _module_name(path)
        for module in sorted(imported_modules(path.read_text(), name, path.name == "__init__.py")):
            if _is_tooling(module):
                arrows.append(f"{name} -> {module}")
    assert not arrows, "product modules importing tooling:\n" + "\n".join(arrows)
