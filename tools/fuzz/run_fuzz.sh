#!/usr/bin/env bash
# run_fuzz.sh: builds vt's libFuzzer targets (tools/fuzz/fuzz_*.cpp; clang, ASan + UBSan, through
# cmake -DVT_FUZZ=ON) and runs each for a while on its corpus, then prints executions and findings
# per target. Exits 1 when any target found something.
#
#   tools/fuzz/run_fuzz.sh [seconds per target = 60] [build dir = build-fuzz] [target ...]
#
# Corpora grow in BUILD/corpus/<target>, seeded from tools/fuzz/corpus/<target> and kept between
# runs. A finding (crash-*, leak-*, oom-*, timeout-*: reproduce with `BUILD/<target> FILE`) lands in
# BUILD/findings/<target>; the log of the last run is BUILD/findings/<target>.log. A target stops at
# its first finding. vt::Error is the expected answer to bad bytes; a crash, a sanitizer report, a
# leak, any other exception escaping (fuzz_util.h), a broken invariant, more than 2 GB of memory or
# 10 s for one input are findings.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$root/build-fuzz}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/tools/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

mkdir -p "$build"
build=$(cd "$build" && pwd)  # the targets run from their findings folder
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" -DCMAKE_C_COMPILER="${CC_FUZZ:-clang}" \
  -DVT_FUZZ=ON -DVT_CUDA=OFF -DVT_BENCH=OFF -DVT_MPI=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" -DCMAKE_C_FLAGS_RELEASE="-O1 -gline-tables-only" > "$build/fuzz_build.log" 2>&1 ||
  { cat "$build/fuzz_build.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >> "$build/fuzz_build.log" 2>&1 ||
  { tail -60 "$build/fuzz_build.log"; exit 1; }

dict_of() {  # the dictionary a target fuzzes with
  case $1 in
    fuzz_safetensors | fuzz_bits) echo "$root/tools/fuzz/safetensors.dict" ;;
    fuzz_image | fuzz_chat) echo "" ;;
    *) echo "$root/tools/fuzz/json.dict" ;;
  esac
}

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
printf '%-26s %14s %10s  %s\n' target executions findings "first finding"
found=0
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t findings=$build/findings/$t
  mkdir -p "$corpus" "$findings"
  cp -n "$root/tools/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  dict=$(dict_of "$t")
  log=$build/findings/$t.log
  (cd "$findings" && "$build/$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
     ${dict:+-dict="$dict"} "$corpus" > "$log" 2>&1) || true
  execs=$(awk '/stat::number_of_executed_units/ {n = $2} END {print n}' "$log")
  n=$(find "$findings" -type f | wc -l)
  first=$(grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz: " "$log" || true)
  printf '%-26s %14s %10s  %s\n' "$t" "${execs:-?}" "$n" "${first:0:120}"
  [ "$n" -eq 0 ] || found=1
done
exit $found
