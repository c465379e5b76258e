"""The README's two commands, as CI runs them: read them from README.md and check what the main one writes.

    python .ci/readme.py command "Reconstruct a brain slice"   # print the first command block under that heading
    python .ci/readme.py check-main                            # its outputs exist and beat the baseline
    python .ci/readme.py commands README.md docs/*.md          # every shell command of those files, one a line

A command block is the first indented code block after the heading; ``\\`` continues a line. :func:`commands`
reads every indented code block of a Markdown file (one command a line, ``# comments`` dropped) and every inline
code span that starts a command (``brgm``, ``python``, ``pip``, ``torchrun``, ``sbatch``).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MAIN = "Reconstruct a brain slice"
#: the programs a shell command in the documentation starts with
PROGRAMS = ("brgm", "python", "pip", "torchrun", "sbatch")
_INLINE = re.compile(rf"`((?:{'|'.join(PROGRAMS)}) [^`]*)`")


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


def commands(path: Path) -> list[str]:
    """Every shell command of the Markdown file ``path``, in order: the lines of its indented code blocks (a
    block follows a blank line; ``\\`` continues a line; a trailing ``# comment`` is dropped; blocks that do not
    start with one of :data:`PROGRAMS`, such as formulas, are left out), then its inline command spans."""
    found: list[str] = []
    previous, current, fenced = "", "", False
    for line in path.read_text().splitlines():
        fenced = fenced != line.startswith("```")
        if fenced or line.startswith("```"):
            previous = line
            continue
        if line.startswith("    ") and (current or previous.strip() == "" or previous.startswith("    ")):
            text = line.strip()
            current = f"{current} {text.removesuffix(chr(92)).strip()}".strip()
            if not text.endswith(chr(92)):
                command = re.sub(r"\s+#\s.*$", "", current).strip()
                if command.split(" ", 1)[0] in PROGRAMS:
                    found.append(command)
                current = ""
        previous = line
    return found + [match.group(1) for match in _INLINE.finditer(path.read_text())]


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
    elif sys.argv[1:2] == ["commands"]:
        for name in sys.argv[2:]:
            print("\n".join(commands(Path(name))))
    else:
        raise SystemExit(__doc__)
