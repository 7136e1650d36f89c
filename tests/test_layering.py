"""The floors of docs/architecture.md, enforced: an import that runs from a lower floor to a higher one fails
here, with the module and the import named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOP = ("harness.pipeline", "harness.cli", "harness.runconfig")
MODEL_LIBS = ("torch", "transformers", "peft", "accelerate", "trl", "vllm")

#: floor -> import prefixes it must never use
FORBIDDEN = {
    "core": ("tasks", "trainers", "reports", *TOP),
    "tasks": ("trainers", "reports", *TOP),
    "trainers": ("tasks", "reports", *TOP),
    # A report is a pure function of run folders: no backend, no task generation, no model library.
    "reports": ("tasks", "trainers", "harness.backends", "harness.named_models", *TOP, *MODEL_LIBS),
}


def floor(module: str) -> str | None:
    if module.startswith(TOP):
        return None  # the top floor may import everything
    return {"harness": "core", "tasks": "tasks", "trainers": "trainers", "reports": "reports"}[
        module.split(".")[0]
    ]


def imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in ("harness", "tasks", "trainers", "reports"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            out.append((".".join(path.relative_to(REPO).with_suffix("").parts), path))
    return out


def violations() -> list[str]:
    bad = []
    for module, path in modules():
        level = floor(module)
        if level is None:
            continue
        for name in sorted(imports(path, module)):
            if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[level]):
                bad.append(f"{module} ({level}) imports {name}")
    return bad


def test_no_import_runs_up_a_floor():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    planted = REPO / "harness" / "_planted_layering_probe.py"
    planted.write_text("from harness.pipeline.run import run_pipeline\nimport reports.report\n")
    try:
        assert violations() == [
            "harness._planted_layering_probe (core) imports harness.pipeline.run",
            "harness._planted_layering_probe (core) imports reports.report",
        ]
    finally:
        planted.unlink()


@pytest.mark.parametrize("module", ["reports.report", "reports.compare", "reports.figures"])
def test_reports_load_no_model_library(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in {MODEL_LIBS!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
