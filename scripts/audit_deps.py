"""Audit the pinned dependencies (requirements.lock) and pyproject.toml's floors.

    .venv/bin/python scripts/audit_deps.py [--lock FILE] [--pyproject FILE] [--no-pip-audit]

1. Every pin in the lock is checked against scripts/advisories.toml (published advisories
   with their affected versions): a pinned version that is affected fails.
2. The lowest version each requirement of pyproject.toml allows (its ``>=`` or ``==``) must
   not be affected either, so a fresh resolve without the lock cannot land on it.
3. pip-audit, when installed, audits the lock too (``--no-deps``, strict). Its services
   may not answer for pinned versions (they do not on the machines this is built on): then
   every package comes back "could not be audited", and this says so, loudly, instead of
   counting that as a pass; checks 1 and 2 still decide. A vulnerability pip-audit does
   find fails.

Exit 0: nothing affected; 1: something is; 2: the inputs could not be read.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@dataclass(frozen=True)
class Advisory:
    package: str
    affected: SpecifierSet
    id: str
    summary: str

    def hits(self, version: Version) -> bool:
        return self.affected.contains(version, prereleases=True)

    def __str__(self) -> str:
        return f"{self.id} ({self.package} {self.affected}): {self.summary}"


def read_lock(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        if m is None:
            raise ValueError(f"{path}: not an exact pin: {line!r}")
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def read_advisories(path: Path) -> tuple[str, list[Advisory]]:
    data = tomllib.loads(path.read_text())
    items = [
        Advisory(
            canonicalize_name(a["package"]), SpecifierSet(a["affected"]), a["id"], a["summary"]
        )
        for a in data.get("advisory", [])
    ]
    return str(data.get("reviewed", "never")), items


def floors(pyproject: Path) -> list[tuple[str, Version]]:
    """The lowest version each requirement allows (runtime and extras), where it says."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    out = []
    for text in reqs:
        req = Requirement(text)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if lows:
            out.append((canonicalize_name(req.name), max(lows)))
    return out


def pip_audit(lock: Path) -> tuple[list[str], str]:
    """(findings, note). Findings fail the audit; the note says what pip-audit could do."""
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which(
        "pip-audit"
    )
    if exe is None:
        return [], "pip-audit: not installed (scripts/setup --dev installs it)"
    try:
        command = [exe, "--no-deps", "--disable-pip", "-r", str(lock), "-f", "json"]
        done = subprocess.run(
            [*command, "--progress-spinner", "off"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        report = json.loads(done.stdout or "{}")
    except (subprocess.TimeoutExpired, ValueError) as e:
        return [], f"pip-audit: NOT RUN ({type(e).__name__}): its service did not answer"
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    findings = [
        f"{d['name']} {d.get('version')}: {v['id']} (fixed in {v.get('fix_versions')})"
        for d in deps
        for v in d.get("vulns", [])
    ]
    if not deps:
        return findings, f"pip-audit: NOT RUN: {done.stderr.strip()[-300:]}"
    if skipped:
        why = skipped[0]["skip_reason"]
        return findings, (
            f"pip-audit: COULD NOT AUDIT {len(skipped)} of {len(deps)} packages (first: "
            f"{why}); its vulnerability service does not answer from here, so this is "
            "not a pass: the advisories table above is what was checked"
        )
    return findings, f"pip-audit: {len(deps)} packages audited, {len(findings)} vulnerable"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--advisories", type=Path, default=ROOT / "scripts" / "advisories.toml")
    parser.add_argument("--no-pip-audit", action="store_true", help="the table only")
    args = parser.parse_args(argv)
    try:
        pins = read_lock(args.lock)
        reviewed, advisories = read_advisories(args.advisories)
        lows = floors(args.pyproject)
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as e:
        print(f"audit-deps: cannot read the inputs: {e}", file=sys.stderr)
        return 2
    problems = []
    for adv in advisories:
        if adv.package in pins and adv.hits(pins[adv.package]):
            problems.append(f"{args.lock.name} pins {adv.package} {pins[adv.package]}: {adv}")
        problems += [
            f"{args.pyproject.name} allows {name} {low}: {adv}"
            for name, low in lows
            if name == adv.package and adv.hits(low)
        ]
    print(
        f"audit-deps: {len(pins)} pinned packages, {len(lows)} pyproject floors, "
        f"{len(advisories)} advisories (table reviewed {reviewed}): "
        f"{len(problems)} affected"
    )
    if not args.no_pip_audit:
        found, note = pip_audit(args.lock)
        print(note)
        problems += [f"pip-audit: {f}" for f in found]
    for p in problems:
        print(f"  AFFECTED: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
