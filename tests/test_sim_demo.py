"""`make demo` (issue 4): the demo runs end to end as a user would start it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_quick_runs_and_every_event_verifies() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simulators.demo", "--quick", "--timeout", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    total = int(re.search(r"summary: (\d+) events received", out).group(1))  # type: ignore[union-attr]
    assert f"summary: all {total} events verified" in out
    assert "summary: none missing by sequence" in out
    lines = [line for line in out.splitlines() if line.lstrip().startswith("webhook #")]
    assert len(lines) >= total
    assert all("signature verified" in line for line in lines)
    printed = [line.split()[2] for line in lines]
    for kind in (
        "charger.boot",
        "transaction.started",
        "transaction.updated",
        "transaction.stopped",
        "remote_start_transaction.accepted",
        "remote_stop_transaction.accepted",
        "charger.disconnected",
    ):
        assert kind in printed, kind
    assert re.search(r"transaction\.stopped .* reason Remote", out)
    assert "CSMS stopped (exit code 0)" in out


def test_demo_speaks_to_the_csms_over_the_wire_only() -> None:
    """DESIGN 1: `simulators` imports nothing from `csms`, `webhooks` or `storage`."""
    probe = (
        "import sys, simulators.demo;"
        "ours = {'csms', 'webhooks', 'storage'};"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ours);"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
