#!/usr/bin/env bash
# run_fuzz.sh: build the safetensors fuzzer with clang (libFuzzer + ASan + UBSan), seed a corpus
# with valid and broken files, and fuzz for a number of seconds.
#
#   tools/fuzz/run_fuzz.sh [seconds=60] [build dir=build-fuzz]
#
# The fuzzer compiles src/safetensors.cpp itself rather than linking libvt: libvt is usually built
# by g++ without sanitizers, and mixing that with clang's instrumented runtime is fragile.
# Findings (crash-*, leak-*, timeout-*) land in the build dir; the corpus is kept there between runs.
set -euo pipefail
SECONDS_TO_RUN=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${2:-$ROOT/build-fuzz}
CXX=${CXX_FUZZ:-clang++}
mkdir -p "$BUILD/corpus"

"$CXX" -std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$ROOT/include" \
  "$ROOT/tools/fuzz/fuzz_safetensors.cpp" "$ROOT/src/safetensors.cpp" -o "$BUILD/fuzz_safetensors"

# seed NAME HEADER DATA_BYTES: a file whose u64 length prefix matches HEADER.
seed() {
  local n=${#2}
  { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8 & 255)) \
      $((n >> 16 & 255)) $((n >> 24 & 255)))"; printf '%s' "$2"; head -c "$3" /dev/zero; } > "$BUILD/corpus/$1"
}
seed valid_two '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[],"data_offsets":[8,10]}}' 10
seed valid_empty '{"e":{"dtype":"I64","shape":[0,3],"data_offsets":[0,0]}}' 0
seed valid_none '{}      ' 0
seed overlap '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}' 4
seed hole '{"a":{"dtype":"BOOL","shape":[2],"data_offsets":[2,4]}}' 4
seed overflow '{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}' 8
seed bad_json '{"a":{"dtype":"F16","shape":[1,' 0
cp "$ROOT/tests/fixtures/safetensors_reference.safetensors" "$BUILD/corpus/reference" 2>/dev/null || true

cat > "$BUILD/safetensors.dict" <<'DICT'
"dtype"
"shape"
"data_offsets"
"__metadata__"
"F32"
"F64"
"BF16"
"F16"
"I32"
"I64"
"U8"
"BOOL"
"I8"
"18446744073709551615"
"9223372036854775807"
"\xc0\xaf"
"\\u0000"
DICT

cd "$BUILD"
./fuzz_safetensors -max_total_time="$SECONDS_TO_RUN" -dict=safetensors.dict -max_len=4096 \
  -print_final_stats=1 corpus
