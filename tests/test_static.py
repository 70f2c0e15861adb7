"""Static checks run as tests so CI reports them in pytest's summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_wire_code_matches_proto() -> None:
    """mydrive/wire/ is exactly what proto/generate.py makes from proto/*.proto."""
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


def test_only_crypto_module_imports_cryptography() -> None:
    """Only mydrive/crypto.py imports the cryptography package."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "mydrive").rglob("*.py")
                 if p.name != "crypto.py" and "import cryptography" in p.read_text()
                 or p.name != "crypto.py" and "from cryptography" in p.read_text()]
    assert offenders == []


def test_product_never_imports_testbed() -> None:
    """mydrive/ never imports sim/ or chaos/ at module level (the CLI may, lazily)."""
    offenders = []
    for path in (ROOT / "mydrive").rglob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import chaos", "from chaos", "import sim", "from sim")):
                offenders.append(f"{path.relative_to(ROOT)}: {line}")
    assert offenders == []
