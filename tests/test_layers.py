"""The layout rules of docs/architecture.md, executable: the module layers, thin job
modules, the stage roster against `jobs/` and the docs' stage table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builders import REPO
from wit_builder import stages

PACKAGE = REPO / "wit_builder"
FRAMEWORK = {"__init__", "config", "errors", "stats", "inputs", "outputs", "spark", "stages",
             "tarshards", "terminal", "peek"}
TOP = {"cli", "pipeline", "show", "explore", "demo"}
# Config classes are plain pydantic types on the library's level: library functions may
# take them (and clip's model configs live beside them).
LAYER_NAMES = ("framework", "library", "job", "top")
MAX_JOB_LINES = 100


def module_name(path: Path) -> str:
    """`wit_builder.images.fetch` for wit_builder/images/fetch.py."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a `wit_builder` module (index into `LAYER_NAMES`)."""
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] in TOP:
        return 3
    if len(parts) == 1:
        return 0 if parts[0] in FRAMEWORK else 1
    return 2 if parts[-1].endswith("_job") else 1


def type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks (imports there are for annotations)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path) -> list[str]:
    """The `wit_builder` modules `path` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    skip = type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return sorted({m for m in found if m in known})


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_layer(path):
    here = module_name(path)
    higher = [m for m in imports(path) if layer(m) > layer(here)]
    assert not higher, (f"{here} ({LAYER_NAMES[layer(here)]}) imports "
                        + ", ".join(f"{m} ({LAYER_NAMES[layer(m)]})" for m in higher))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_job_module(path):
    jobs = [m for m in imports(path) if m.endswith("_job") and m != module_name(path)]
    assert not jobs, f"{path.name} imports {jobs}: shared steps belong in library modules"


def test_job_modules_are_thin():
    thick = {p.name: n for p in PACKAGE.rglob("*_job.py")
             if (n := len(p.read_text().splitlines())) > MAX_JOB_LINES}
    assert not thick, f"job modules over {MAX_JOB_LINES} lines: {thick}"


def test_every_roster_stage_has_its_job_module_and_config():
    for stage in stages.ROSTER:
        job = stage.job_module()
        assert stage.name == job.STAGE
        assert job.CONFIG is stage.config_class()
        assert isinstance(job.OUTPUT_VERSION, int)


def test_jobs_scripts_are_the_spark_stages():
    scripts = {p.stem for p in (REPO / "jobs").glob("*.py")}
    assert scripts == set(stages.SPARK_JOBS)


def test_docs_stage_table_is_the_roster():
    assert stages.docs_table() in (REPO / "docs" / "architecture.md").read_text()


def test_layer_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a library module importing a job module is caught."""
    assert layer("wit_builder.images.fetch") == 1
    assert layer("wit_builder.images.download_job") == 2
    assert layer("wit_builder.cli.options") == 3
    assert layer("wit_builder.tarshards") == 0
    bad = tmp_path / "bad.py"
    bad.write_text("from wit_builder.images import download_job\n"
                   "if TYPE_CHECKING:\n    from wit_builder.cli import app\n")
    assert imports(bad) == ["wit_builder.images", "wit_builder.images.download_job"]
