"""Static checks run as tests so CI reports them in pytest's summary."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_wire_code_matches_proto() -> None:
    """mydrive/transport/wire/ is exactly what proto/generate.py makes from proto/*.proto."""
    result = _run(sys.executable, "proto/generate.py", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_clean() -> None:
    """ruff finds nothing in the product, the test-bed and the tests."""
    result = _run(str(BIN / "ruff"), "check", "mydrive", "sim", "chaos", "tests", "proto",
                  "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    """mypy (strict on mydrive/) finds nothing."""
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


# Packages of mydrive/ from the bottom up: a module may import its own package and any package
# of a lower layer, never one above (docs/architecture.md). Siblings on one layer don't import
# each other.
LAYERS: list[set[str]] = [
    {"errors"},
    {"runtime"},
    {"formats", "crypto"},
    {"transport"},
    {"storage", "metadata"},
    {"engine"},
    {"client", "testing"},
    {"node"},
    {"ui", "sftp"},
    {"cli"},
    {"__main__", "__init__"},
]
TESTBED = {"chaos", "sim", "tests", "benchmarks"}


def _layer_of(package: str) -> int:
    for rank, names in enumerate(LAYERS):
        if package in names:
            return rank
    raise AssertionError(f"mydrive/{package} is in no layer of tests/test_static.py")


def _mydrive_imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a product file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "mydrive":
                found += [(node.lineno, f"mydrive.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return sorted(found)


def import_violations(root: Path) -> list[str]:
    """Every import in mydrive/ that points up a layer, sideways, or into the test-bed."""
    offenders = []
    for path in sorted((root / "mydrive").rglob("*.py")):
        rel = path.relative_to(root)
        if "wire" in rel.parts:
            continue
        own = rel.parts[1].removesuffix(".py")
        for line, module in _mydrive_imports(root, path):
            top = module.split(".")[0]
            if top in TESTBED:
                offenders.append(f"{rel}:{line} imports the test-bed ({module})")
            elif top == "mydrive" and "." in module:
                target = module.split(".")[1]
                if target != own and _layer_of(target) >= _layer_of(own):
                    offenders.append(f"{rel}:{line} imports {module} (layer "
                                     f"{_layer_of(target)} from layer {_layer_of(own)})")
    return offenders


def test_product_imports_point_down() -> None:
    """mydrive/ imports only lower layers, and never chaos, sim, tests or benchmarks."""
    assert import_violations(ROOT) == []


def test_import_check_catches_upward_and_testbed_imports(tmp_path: Path) -> None:
    """The import check fails on an indented test-bed import and on an upward import."""
    (tmp_path / "mydrive" / "formats").mkdir(parents=True)
    (tmp_path / "mydrive" / "formats" / "bad.py").write_text(
        "def f():\n    if True:\n        import chaos.runner\n"
        "from mydrive.engine import upload\n"
        "from .. import client\n")
    found = import_violations(tmp_path)
    assert len(found) == 3, found
    assert "test-bed" in found[0] and "mydrive.engine" in found[1] and "mydrive.client" in found[2]


def test_wheel_contains_only_mydrive(tmp_path: Path) -> None:
    """A wheel built from the tree ships the mydrive package and nothing of the test-bed."""
    result = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-q", "-w", str(tmp_path), str(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("mydrive-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"mydrive"}
