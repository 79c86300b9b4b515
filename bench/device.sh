#!/usr/bin/env bash
# The GPU machine's script (no network needed; torch, CUDA, nvcc, cmake, ninja, pybind11,
# scikit-build-core and pytest preinstalled). From the working tree it
#   1. builds and installs s6kit with the CUDA backend (timed), and the C++ benchmarks with CMake;
#   2. runs every test marked `cuda`;
#   3. runs compute-sanitizer (memcheck, racecheck, synccheck, initcheck) on small scan shapes, and
#      memcheck, synccheck and racecheck on small SoftSort cases (bench/softsort_sanitize.py);
#   4. runs the C++ scan benchmark (every anchor shape, bf16 and fp32; layout and split variants)
#      and the Python harnesses (`s6kit bench scan / softsort / train --device cuda`; softsort
#      also with a dense output gradient, and captured into a CUDA graph);
#   5. profiles the scan kernels at (8, 1536, 2048, 16) bf16 with Nsight Compute;
# and writes logs, JSON and summary.md into "${OUT:-bench/results/latest}". Every step runs even
# when an earlier one failed (its status is recorded); the whole run stays within BUDGET_S
# seconds (default 530), and the output ends with the summary.
#
#   OUT=bench/results/h100 bench/device.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-bench/results/latest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUDGET=${BUDGET_S:-530}
START=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 8)
export CMAKE_BUILD_PARALLEL_LEVEL=$NPROC
PY=${PYTHON:-python3}
ROWS=()

elapsed_ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
fmt_s() { printf '%d.%d' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }

# step NAME MAX_SECONDS COMMAND... : runs COMMAND with its output in $OUT/NAME.log.
step() {
  local name=$1 max=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < 15 )); then
    ROWS+=("| $name | skipped (time budget) | 0 |")
    return 1
  fi
  (( max > left )) && max=$left
  local t0 rc ms status
  t0=$(date +%s%N)
  echo "== $name (at most ${max}s)"
  timeout --kill-after=10 "$max" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  ms=$(elapsed_ms "$t0")
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${max}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  ROWS+=("| $name | $status | $(fmt_s "$ms") |")
  echo "   $status in $(fmt_s "$ms") s"
  return $rc
}

# ---- what is being measured -------------------------------------------------------------------
# bench/results/COMMIT (ignored by git; written just before the tree is copied to a machine without
# the repository's history) names the commit; otherwise git is asked.
{
  if [ -f bench/results/COMMIT ]; then
    cat bench/results/COMMIT
  elif git rev-parse HEAD 2>/dev/null; then
    git status --porcelain 2>/dev/null | head -20 | sed 's/^/dirty: /'
  else
    echo "unknown (no .git and no bench/results/COMMIT)"
  fi
} > "$OUT/commit.txt"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
  echo "cores $NPROC"
} > "$OUT/environment.txt"

# ---- build (from clean build directories, so that the times are full builds) ------------------
rm -rf "$ROOT"/build/cp3* "$ROOT/build/device-bench"
step build_pip 300 "$PY" -m pip install --no-build-isolation --no-deps -v . \
  -C cmake.define.S6KIT_CUDA=ON -C cmake.define.S6KIT_CUDA_ARCHS=90-real
BENCH_BUILD=$ROOT/build/device-bench
step build_cmake_bench 240 bash -c "cmake -S '$ROOT' -B '$BENCH_BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DS6KIT_CUDA=ON -DS6KIT_CUDA_ARCHS=90-real -DS6KIT_BUILD_BENCH=ON && cmake --build '$BENCH_BUILD' -j $NPROC"
BENCH=$BENCH_BUILD/bench/scan_cuda_bench
"$PY" -c "import s6kit.cli as c; c.info(True)" > "$OUT/s6kit_info.txt" 2>&1

# ---- tests ------------------------------------------------------------------------------------
# From an empty directory: `import s6kit` must find the installed package, not python/.
# Every test marked `cuda`, in any file.
step pytest_cuda 240 bash -c "cd '$OUT' && '$PY' -m pytest --maxfail=30 -q -rs -p no:cacheprovider \
  --rootdir='$ROOT' -c '$ROOT/pyproject.toml' --junitxml='$OUT/pytest_cuda.xml' -m cuda '$ROOT/tests'"

# ---- sanitizers -------------------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
sanitize() {  # sanitize TOOL : small shapes covering 2, 4 and 8 states per thread, real and scalar A
  local tool=$1
  for args in "--shape=2,40,130,16 --dtype=all" "--shape=1,5,75,256 --dtype=bf16" \
              "--shape=2,12,65,16 --dtype=fp32 --scalar_A=1" "--shape=3,33,33,64 --dtype=bf16" \
              "--shape=2,40,130,16 --dtype=bf16 --bwd_states=2" \
              "--shape=2,12,65,5 --dtype=fp32 --scalar_A=1 --bwd_states=2"; do
    echo "--- $tool $args"
    # shellcheck disable=SC2086
    "$SAN" --tool "$tool" --error-exitcode 3 "$BENCH" $args --once || return $?
  done
}
if [ -n "$SAN" ] && [ -x "$BENCH" ]; then
  for tool in memcheck racecheck synccheck initcheck; do
    step "sanitizer_$tool" 90 bash -c "$(declare -f sanitize); SAN='$SAN' BENCH='$BENCH'; sanitize $tool"
  done
else
  ROWS+=("| sanitizers | not run (compute-sanitizer or the bench binary missing) | 0 |")
fi
# The SoftSort kernels, through Python (only s6kit's kernels instrumented); racecheck on a case per
# kernel family (--few: the whole set took more than 400 s under it).
if [ -n "$SAN" ]; then
  for tool in memcheck synccheck racecheck; do
    few=""
    [ "$tool" = racecheck ] && few="--few"
    step "sanitizer_softsort_$tool" 120 bash -c "cd '$OUT' && '$SAN' --tool $tool --error-exitcode 3 \
      --kernel-name kns=cuda_softsort '$PY' '$ROOT/bench/softsort_sanitize.py' $few"
  done
fi

# ---- benchmarks -------------------------------------------------------------------------------
if [ -x "$BENCH" ]; then
  step bench_cpp 200 "$BENCH" --reps=30 --json="$OUT/scan_cuda_bench.json"
  # The forward with 4 and 8 states per thread at the main shape (checks the layout default).
  step bench_cpp_variants 160 bash -c "'$BENCH' --shape=8,1536,2048,16 --variants --json='$OUT/variants_real.json' && \
    '$BENCH' --shape=8,1536,2048,16 --scalar_A=1 --variants --json='$OUT/variants_scalar.json' && \
    '$BENCH' --shape=1,1536,65536,16 --variants --reps=10 --json='$OUT/variants_long.json' && \
    '$BENCH' --shape=8,1536,2048,64 --variants --reps=10 --json='$OUT/variants_n64.json'"
else
  ROWS+=("| bench_cpp | not run (no bench binary) | 0 |")
fi
step bench_python 150 bash -c "cd '$OUT' && '$PY' -m s6kit.cli bench scan --device cuda --scalar-A \
  --reps 30 --json '$OUT/bench_scan_python.json'"
step bench_softsort 120 bash -c "cd '$OUT' && '$PY' -m s6kit.cli bench softsort --device cuda \
  --kernels --json '$OUT/bench_softsort.json'"
step bench_softsort_dense 90 bash -c "cd '$OUT' && '$PY' -m s6kit.cli bench softsort --device cuda \
  --dense-grad --no-reference --kernels --json '$OUT/bench_softsort_dense.json'"
# The same step captured into a CUDA graph: the GPU's time where small shapes are host-bound.
step bench_softsort_graph 90 bash -c "cd '$OUT' && '$PY' -m s6kit.cli bench softsort --device cuda \
  --graph --no-reference --json '$OUT/bench_softsort_graph.json'"
step bench_train 90 bash -c "cd '$OUT' && '$PY' -m s6kit.cli bench train --device cuda --dtype bfloat16 \
  --steps 20 --reference-steps 2"

# ---- profile ----------------------------------------------------------------------------------
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ] && [ -x "$BENCH" ]; then
  for a in real scalar; do
    s=0; [ "$a" = scalar ] && s=1
    # Profiled into a report, then its details printed into the log (and the summary).
    step "ncu_bf16_8x1536x2048x16_A_$a" 120 bash -c "'$NCU' --clock-control none --section SpeedOfLight \
      --section Occupancy --section WarpStateStats --section LaunchStats \
      --section MemoryWorkloadAnalysis --section SchedulerStats --section InstructionStats \
      --section SourceCounters --import-source yes -k 'regex:scan_(fwd|bwd)_kernel' \
      --export '$OUT/ncu_bf16_A_$a' --force-overwrite \
      '$BENCH' --shape=8,1536,2048,16 --dtype=bf16 --scalar_A=$s --once && \
      '$NCU' --import '$OUT/ncu_bf16_A_$a.ncu-rep' --page details"
  done
else
  ROWS+=("| ncu | not run (ncu or the bench binary missing) | 0 |")
fi

# ---- summary ----------------------------------------------------------------------------------
{
  echo "# s6kit on the GPU machine"
  echo
  echo "commit: $(head -1 "$OUT/commit.txt")"
  echo
  sed 's/^/    /' "$OUT/environment.txt"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Full build (pip install, CUDA for sm_90): see build_pip above."
  echo
  echo "## tests"
  echo '```'
  grep -E "passed|failed|error|skipped" "$OUT/pytest_cuda.log" 2>/dev/null | tail -3
  grep -E "^(FAILED|ERROR)" "$OUT/pytest_cuda.log" 2>/dev/null | head -10
  echo '```'
  echo
  echo "## sanitizers"
  echo '```'
  for tool in memcheck racecheck synccheck initcheck softsort_memcheck softsort_synccheck softsort_racecheck; do
    f="$OUT/sanitizer_$tool.log"
    [ -f "$f" ] && echo "$tool: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$f" | sort | uniq -c | tr '\n' ';')"
  done
  echo '```'
  echo
  echo "## C++ benchmark (scan_cuda_bench)"
  echo '```'
  grep -vE "^==|^ran " "$OUT/bench_cpp.log" 2>/dev/null | tail -45
  echo '```'
  echo
  echo "## Forward layouts: states per thread, tile steps; chunks along L of both directions"
  echo '```'
  grep -E "fwd|states per thread|chunk" "$OUT/bench_cpp_variants.log" 2>/dev/null
  echo '```'
  echo
  echo "## Python harness (s6kit bench scan)"
  echo '```'
  tail -30 "$OUT/bench_python.log" 2>/dev/null | cut -c1-220
  echo '```'
  echo
  echo "## SoftSort and training step"
  echo '```'
  grep -v "^    " "$OUT/bench_softsort.log" 2>/dev/null | tail -12 | cut -c1-220
  grep -v "^    " "$OUT/bench_softsort_dense.log" 2>/dev/null | tail -12 | cut -c1-220
  grep -v "^    " "$OUT/bench_softsort_graph.log" 2>/dev/null | tail -12 | cut -c1-220
  tail -4 "$OUT/bench_train.log" 2>/dev/null | cut -c1-220
  echo '```'
  echo
  echo "## Nsight Compute (bf16, 8 x 1536 x 2048 x 16)"
  echo '```'
  for a in real scalar; do
    f="$OUT/ncu_bf16_8x1536x2048x16_A_$a.log"
    [ -f "$f" ] || continue
    echo "-- A $a"
    grep -E "scan_(fwd|bwd)_kernel|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Dynamic Shared|Issue Slots Busy|Warp Cycles Per Issued|Theoretical Occupancy" "$f" | sed 's/  */ /g' | head -40
  done
  echo '```'
  echo
  echo "Total: $(( $(date +%s) - START )) s. Files: $OUT"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
