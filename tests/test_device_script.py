"""benchmarks/device.sh, the speed figures of record in one call: its CPU half runs here (``--quick``)."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device.sh"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_quick_run_writes_a_dated_section_of_the_step_benchmark(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    done = run("--quick", "--out", str(tmp_path / "out"), "--doc", str(doc))
    assert done.returncode == 0, done.stdout + done.stderr
    section = (tmp_path / "out" / "section.md").read_text()
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    assert section.startswith(f"## Device run {today} (")
    assert "### step (" in section and "FAILED" not in section
    assert "non-fused" in section  # the benchmark's own figures, not just its command
    assert doc.read_text() == "# Benchmarks\n\n" + section


def test_bad_arguments_are_refused_and_help_describes_the_stages() -> None:
    bad = run("--bogus")
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
    shown = run("--help")
    assert shown.returncode == 0 and "the test suite on the device" in shown.stdout
