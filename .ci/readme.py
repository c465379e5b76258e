"""The README's two commands, as CI runs them: read them from README.md and check what the main one writes.

    python .ci/readme.py command "Reconstruct a brain slice"   # print the first command block under that heading
    python .ci/readme.py check-main                            # its outputs exist and beat the baseline

A command block is the first indented code block after the heading; ``\\`` continues a line.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MAIN = "Reconstruct a brain slice"


def command(heading: str) -> str:
    """The shell command in the first indented block under ``## heading``, continuation lines joined."""
    text = README.read_text()
    marker = f"## {heading}"
    if marker not in text:
        raise SystemExit(f"README.md has no section {marker!r}")
    lines: list[str] = []
    for line in text.split(marker, 1)[1].splitlines()[1:]:
        if line.startswith("    "):
            lines.append(line.strip())
        elif lines:
            break
    if not lines:
        raise SystemExit(f"README.md's section {marker!r} has no indented command block")
    return " ".join(line.removesuffix("\\").strip() for line in lines)


def check_main() -> None:
    """The main command wrote every output, and ``metrics.json`` puts the reconstruction above the baseline."""
    args = shlex.split(command(MAIN).split("&& brgm ", 1)[1])
    out = Path(args[args.index("--out") + 1])
    stem = Path(args[args.index("--input") + 1]).stem
    missing = [
        name
        for name in (f"{stem}_recon.png", f"{stem}_baseline.png", f"{stem}_comparison.png", "config.json")
        if not (out / name).is_file()
    ]
    if missing:
        raise SystemExit(f"the README's main command did not write {', '.join(missing)} in {out}")
    metrics = json.loads((out / "metrics.json").read_text())[stem]
    recon, baseline = metrics["recon"]["psnr"], metrics["baseline"]["psnr"]
    if not recon > baseline:
        raise SystemExit(f"reconstruction {recon:.2f} dB is not above the baseline's {baseline:.2f} dB")
    print(f"README main command: reconstruction {recon:.2f} dB, baseline {baseline:.2f} dB ({out})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["command"] and len(sys.argv) == 3:
        print(command(sys.argv[2]))
    elif sys.argv[1:] == ["check-main"]:
        check_main()
    else:
        raise SystemExit(__doc__)
