"""Every dvc.yaml stage lists the project code it runs: a change to that code re-runs the stage.

For each stage (each item of a ``foreach`` stage), the module behind ``python -m pipelines
<name>`` is ``pipelines/<name>.py``, entered through ``pipelines/__main__.py`` (the command's
entry file; the other sub-apps it registers are not followed, since their code does not run
in this stage). The import closure follows ``import`` and ``from ... import`` statements
anywhere in a file (inside functions too), over ``ganseg.*`` and ``pipelines.*`` only, and
counts each package's ``__init__.py`` that an import executes. Every file of the closure must be
covered by a ``deps`` entry: the file itself or a folder above it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGE_ROOTS = {"ganseg": REPO_ROOT / "src", "pipelines": REPO_ROOT}
COMMAND = re.compile(r"python -m pipelines (\w+)")


def _stages() -> dict[str, dict]:
    """Stage name -> definition, ``foreach`` stages expanded to ``name@item`` with their values."""
    out = {}
    for name, stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        for key, item in stage["foreach"].items():
            text = yaml.safe_dump(stage["do"]).replace("${key}", str(key))
            for field, value in (item or {}).items():
                text = text.replace(f"${{item.{field}}}", str(value))
            out[f"{name}@{key}"] = yaml.safe_load(text)
    return out


def _module_file(module: str) -> Path | None:
    """``ganseg.metrics.fid`` -> src/ganseg/metrics/fid.py (or .../__init__.py); None if not ours."""
    top = module.split(".", 1)[0]
    if top not in PACKAGE_ROOTS:
        return None
    base = PACKAGE_ROOTS[top].joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    root = PACKAGE_ROOTS["ganseg"] if path.is_relative_to(PACKAGE_ROOTS["ganseg"] / "ganseg") else REPO_ROOT
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names, with its parent packages."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules; attributes drop out
    with_parents = set()
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return with_parents


def import_closure(entry: Path) -> set[Path]:
    """The project files that running ``entry`` imports, ``entry`` included."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path):
            found = _module_file(module)
            if found is not None and found not in seen:
                todo.append(found)
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO_ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def test_the_closure_follows_function_level_imports_and_package_inits():
    closure = {p.relative_to(REPO_ROOT).as_posix() for p in import_closure(REPO_ROOT / "pipelines" / "evaluate.py")}
    assert "src/ganseg/tracking.py" in closure  # imported inside update_registry()
    assert {"src/ganseg/__init__.py", "src/ganseg/metrics/__init__.py", "pipelines/__init__.py"} <= closure
    assert "src/ganseg/io.py" in closure


STAGES = _stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_imports(stage):
    definition = STAGES[stage]
    command = COMMAND.search(definition["cmd"])
    assert command, f"{stage}: cmd {definition['cmd']!r} is not `python -m pipelines <name>`"
    entry = REPO_ROOT / "pipelines" / f"{command.group(1)}.py"
    code = import_closure(entry) | {REPO_ROOT / "pipelines" / "__main__.py", REPO_ROOT / "pipelines" / "__init__.py"}
    deps = [str(dep) for dep in definition.get("deps", [])]
    missing = sorted(p.relative_to(REPO_ROOT).as_posix() for p in code if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage '{stage}' runs code its deps do not list: {', '.join(missing)}"
