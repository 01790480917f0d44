"""Pinned, audited dependencies: requirements.lock is what is installed, and
scripts/audit_deps.py fails on an affected pin or pyproject floor (issue 15)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
AUDIT = [sys.executable, str(ROOT / "scripts" / "audit_deps.py"), "--no-pip-audit"]


def _audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUDIT, *args], capture_output=True, text=True, timeout=60, check=False)


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_installed_versions_are_the_locked_ones() -> None:
    # scripts/setup installs with the lock as constraints: a drift means it did not
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    pins = _pins()
    drift = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not drift, f"installed versions differ from requirements.lock: {drift}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    unpinned = [r for r in wanted if canonicalize_name(Requirement(r).name) not in pins]
    assert not unpinned, f"in pyproject.toml but not in requirements.lock: {unpinned}"


def test_the_lock_and_the_floors_pass_the_audit() -> None:
    done = _audit()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 affected" in done.stdout


def test_an_affected_pin_fails_naming_the_advisory(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("flask==3.1.3\ngunicorn==22.0.0\nh11==0.14.0\n")
    done = _audit("--lock", str(lock))
    assert done.returncode == 1, done.stdout
    assert "pins gunicorn 22.0.0: CVE-2024-6827" in done.stdout
    assert "pins h11 0.14.0: CVE-2025-43859" in done.stdout
    assert "flask 3.1.3" not in done.stdout


def test_a_pyproject_floor_that_allows_an_affected_version_fails(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["gunicorn>=22.0,<28", "jinja2>=3.1.6"]\n'
    )
    done = _audit("--pyproject", str(pyproject))
    assert done.returncode == 1, done.stdout
    assert "allows gunicorn 22.0: CVE-2024-6827" in done.stdout
    assert "jinja2" not in done.stdout


def test_a_lock_without_exact_pins_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("gunicorn>=23\n")
    done = _audit("--lock", str(lock))
    assert done.returncode == 2 and "not an exact pin" in done.stderr
