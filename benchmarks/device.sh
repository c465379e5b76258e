#!/usr/bin/env bash
# The speed figures of record (issue 27) in one call, for a lent GPU or the CPU:
#
#   1. the test suite on the device (tests parametrised over devices run their CUDA cases where CUDA is present);
#   2. the step: one synthesis forward + backward at 64² and 256², batch 1 and 8 (bench_synthesis.py);
#   3. the solve: the default MAP solve and 16 Laplace draws of a 64² slice (bench_sampling.py);
#   4. the cohort: items/s of `brgm compose` over 1 and 2 processes (bench_distributed.py).
#
# Each stage's output goes to OUT/NAME.txt, and OUT/section.md gathers them under a heading naming the date and the
# device, ready for docs/benchmarks.md (appended to it with --doc docs/benchmarks.md). A stage that fails or runs
# past its limit is reported in the section and the others still run; the exit status is 1 if any failed.
#
#   bash benchmarks/device.sh --out "$OUT"                 # on the lent GPU machine: under 8 minutes on an H100
#   bash benchmarks/device.sh --quick --out /tmp/device    # the CPU half at its smallest (CI): the 64² step
set -uo pipefail
cd "$(dirname "$0")/.."

out=out/device
doc=""
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --doc) doc="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"

if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  device=cuda
  name=$(python -c "import torch; print(torch.cuda.get_device_name(0))")
else
  device=cpu
  name="$(uname -m) CPU, $(nproc) cores"
fi
section="$out/section.md"
{
  echo "## Device run $(date -u +%Y-%m-%d) ($name)"
  echo
  echo "Written by \`benchmarks/device.sh$([ $quick = 1 ] && echo ' --quick')\`; torch $(python -c 'import torch; print(torch.__version__)')."
  echo
} > "$section"

failed=0
# stage NAME LIMIT_S COMMAND...: run it under a time limit, keep its output, and add it to the section
stage() {
  local title="$1" limit="$2"
  shift 2
  echo "+ $*"
  local start=$SECONDS status=0
  timeout "$limit" "$@" > "$out/$title.txt" 2>&1 || status=$?
  tail -n 40 "$out/$title.txt"
  {
    echo "### $title ($((SECONDS - start)) s$([ $status = 0 ] || echo ", FAILED: exit $status"))"
    echo
    echo '    $' "$*"
    grep -v -e '^\s*$' -e 'Warning' -e 'warnings.warn' "$out/$title.txt" | tail -n 30 | sed 's/^/    /'
    echo
  } >> "$section"
  [ $status = 0 ] || failed=1
}

if [ $quick = 1 ]; then
  stage step 120 python benchmarks/bench_synthesis.py --resolution 64 --repeats 1 --batches 1 2 --device "$device"
else
  stage tests 330 python -m pytest -q -x -p no:cacheprovider
  for resolution in 64 256; do
    stage "step-$resolution" 120 python benchmarks/bench_synthesis.py --resolution "$resolution" --repeats 5 \
      --batches 1 8 --device "$device"
  done
  stage solve 120 python benchmarks/bench_sampling.py --solvers map laplace --device "$device" \
    --threads "$(nproc)"
  stage cohort 120 python benchmarks/bench_distributed.py --device "$device" --processes 1,2 --batch-size 1,8
fi

if [ -n "$doc" ]; then
  { echo; cat "$section"; } >> "$doc"
fi
echo "section: $section"
exit $failed
