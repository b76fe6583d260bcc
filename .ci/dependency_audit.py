"""Audit the installed dependencies for known vulnerabilities (pip-audit), for CI.

Fails on any vulnerability that is not justified in ``.ci/audit-justified.txt`` (one
``ID  reason`` per line, each also explained in docs/security.md). pip-audit asks PyPI's JSON
API (or OSV) about every pinned version; where that service cannot be reached or does not
know a version (a mirror, a wheel built for this project such as torch's CPU build), the
dependency is reported as not audited, with its count, instead of passing silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNREACHABLE = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "timed out")
"""An audit that cannot reach its data source says so and does not fail the build: the
dependencies are then reported as not audited, exactly as when the service does not know them."""


def justified() -> dict[str, str]:
    entries = {}
    for line in (HERE / "audit-justified.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            vuln_id, _, reason = line.partition(" ")
            entries[vuln_id] = reason.strip()
    return entries


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
         "--format", "json", "--desc", "off"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        unreachable = any(sign in run.stderr for sign in UNREACHABLE)
        verdict = "could not reach the vulnerability service" if unreachable else "failed"
        print(f"dependency audit: pip-audit {verdict} (exit {run.returncode}); nothing audited")
        print(run.stderr[-1500:])
        return 0 if unreachable else 1
    allowed = justified()
    audited = [dep for dep in report["dependencies"] if "skip_reason" not in dep]
    skipped = [dep for dep in report["dependencies"] if "skip_reason" in dep]
    findings = [
        (dep["name"], dep["version"], vuln["id"], vuln.get("fix_versions", []))
        for dep in audited
        for vuln in dep.get("vulns", [])
    ]
    unjustified = [f for f in findings if f[2] not in allowed]
    for name, version, vuln_id, fixes in findings:
        verdict = f"justified: {allowed[vuln_id]}" if vuln_id in allowed else "NOT JUSTIFIED"
        print(f"  {name} {version}: {vuln_id} (fixed in {', '.join(fixes) or '-'}) {verdict}")
    print(
        f"dependency audit: {len(audited)} audited, {len(findings)} known vulnerabilities "
        f"({len(unjustified)} unjustified), {len(skipped)} not audited"
    )
    if skipped:
        print(
            "  not audited (the vulnerability service does not know these versions or cannot "
            "be reached): "
            + ", ".join(dep["skip_reason"].rsplit(": ", 1)[-1] for dep in skipped[:12])
            + (" ..." if len(skipped) > 12 else "")
        )
    return 1 if unjustified else 0


if __name__ == "__main__":
    raise SystemExit(main())
