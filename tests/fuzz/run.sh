#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a while on a fresh copy of
# its seed corpus; prints the executions each reached, and exits non-zero if any target crashed.
#
#   tests/fuzz/run.sh [seconds-per-target] [target...]      (default: 60 s, every target)
#
# Targets: framing framing_roundtrip quote env_block utf. BUILD_DIR overrides build-fuzz (relative
# to the source root); FUZZ_RUNS=N also stops each target after N executions (the long run:
# FUZZ_RUNS=10000000 tests/fuzz/run.sh 10800 framing quote); FUZZ_SEED=N repeats a run. A crash leaves its input in
# <build>/fuzz-run/<target>/ (crash-*, leak-*, timeout-*); replay it with
# <build>/tests/fuzz/fuzz_<target> <file>.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(framing framing_roundtrip quote env_block utf)
cd "$root" || exit 1
build=${BUILD_DIR:-build-fuzz}
options=(-Dfuzzing=true -Dtests=false -Dexamples=false -Dbenchmarks=false -Db_sanitize=address,undefined -Ddebug=true)

# Configure once; later runs only make sure the options are still these.
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" "${options[@]}" >/dev/null || exit 1
else
  CXX=clang++ meson setup "$build" "${options[@]}" || exit 1
fi
if ! grep -q 'tests/fuzz/fuzz_' "$build/build.ninja"; then
  echo "run.sh: $build has no fuzz targets. Either the compiler is not clang (remove $build)," >&2
  echo "or meson.build does not reach tests/fuzz with -Dtests=false; it needs, after subdir('tests'):" >&2
  echo "  if get_option('fuzzing') and not get_option('tests') and not meson.is_subproject()" >&2
  echo "    subdir('tests/fuzz')" >&2
  echo "  endif" >&2
  exit 1
fi
# One job: the machine is shared.
ninja -C "$build" -j1 "${targets[@]/#/tests/fuzz/fuzz_}" || exit 1

# halt_on_error: a UBSan report is a crash. Leak checking needs ptrace rights some sandboxes lack.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
failed=()
limit=()
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
# FUZZ_SEED=N makes a run repeatable (CI uses one, so a red CI can be replayed); unset: random.
[ -n "${FUZZ_SEED:-}" ] && limit+=(-seed="$FUZZ_SEED")
printf '%-18s %14s %12s %8s  %s\n' target executions exec/s seconds result
for t in "${targets[@]}"; do
  work="$build/fuzz-run/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp "$here/corpus/$t"/* "$work/corpus/"
  start=$(date +%s.%N)
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 "${limit[@]}" \
    -artifact_prefix="$work/" "$work/corpus" >"$work/log.txt" 2>&1
  rc=$?
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.txt" | tail -n 1)
  rate=$(awk -v n="${execs:-0}" -v s="$elapsed" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
  result=ok
  if [ $rc -ne 0 ]; then
    result="CRASH (exit $rc): see $work/log.txt"
    failed+=("$t")
  fi
  printf '%-18s %14s %12s %8s  %s\n' "$t" "${execs:-?}" "$rate" "$elapsed" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "== $t" >&2
    grep -E 'invariant failed|ERROR: |runtime error|SUMMARY|Test unit written' "$build/fuzz-run/$t/log.txt" >&2
  done
  exit 1
fi
