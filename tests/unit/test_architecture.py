"""The pure packages stay pure: fleet.core and fleet.vassalfile import the standard library and themselves only.

import-linter (`make lint`, pyproject.toml) checks the layers and forbids the known packages; it cannot say
"standard library only". This walks every import statement of the two packages (inside functions and
`if TYPE_CHECKING:` blocks too) and fails on any module that is neither in the standard library nor the
package itself, whether another part of fleet or a third-party package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

FLEET = Path(__file__).resolve().parents[2] / "fleet"
PURE = ("core", "vassalfile")


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `path`, a module of `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
            else:  # relative: resolved against the module's own package
                parts = package.split(".")
                base = ".".join(parts[: max(0, len(parts) - (node.level - 1))])
                if node.module:
                    found.append((node.lineno, f"{base}.{node.module}"))
                else:  # `from . import x`: x may be a module of the package
                    found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def allowed(module: str, package: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == package or module.startswith(package + ".")


def foreign_imports(package_dir: Path) -> list[str]:
    """'path:line imports module' for each import of a module outside the standard library and the package."""
    package = f"fleet.{package_dir.name}"
    bad = []
    for path in sorted(package_dir.rglob("*.py")):
        own = ".".join([package, *path.relative_to(package_dir).with_suffix("").parts[:-1]])
        for line, module in sorted(imported_modules(path, own)):
            if not allowed(module, package):
                bad.append(f"{path.relative_to(package_dir.parent.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("name", PURE)
def test_the_pure_package_imports_only_the_standard_library_and_itself(name):
    assert (FLEET / name / "__init__.py").is_file()
    assert foreign_imports(FLEET / name) == []


def test_the_walk_catches_an_adapter_a_third_party_package_and_a_relative_escape(tmp_path):
    package = tmp_path / "core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(
        "from __future__ import annotations\n"
        "import os.path\n"
        "from dataclasses import dataclass\n"
        "from fleet.core.states import State\n"
        "from . import states\n"
        "def later():\n"
        "    from fleet.proxy import nginx\n"
        "    import flask\n"
        "from .. import layout\n"
    )
    found = foreign_imports(package)
    assert [line.split(" imports ")[1] for line in found] == ["fleet.proxy", "flask", "fleet.layout"]
