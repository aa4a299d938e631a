#!/usr/bin/env bash
# The whole CTest suite again, built with AddressSanitizer (LeakSanitizer included) and
# UndefinedBehaviorSanitizer: .ci/run calls it after scripts/test.sh. CPU code only (VT_CUDA=OFF),
# no benchmarks. Any report stops the process that made it (halt_on_error; UBSan is compiled with
# -fno-sanitize-recover), so it fails that test.
#
# -O1, not -O3: under ASan, -O3 makes the compile of the big kernel files (src/cpu_elementwise.cpp
# above all) several times slower (over 10 minutes for that one file on 2 shared cores). With
# -fexpensive-optimizations, because GCC forms fused multiply-adds only with it (on at -O2 and up):
# without them, f32 bicubic interpolation lands 3e-6 off PyTorch's values, outside test_nn_conv's
# tolerance. Nothing is excluded from the suite.
#
#   scripts/test_sanitizers.sh [build dir = build-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
jobs=$(nproc)
mkdir -p "$build"
log="$build/build.log"
opt="-O1 -fexpensive-optimizations -DNDEBUG"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$opt" \
  -DCMAKE_C_FLAGS_RELEASE="$opt" -DVT_CUDA=OFF -DVT_BENCH=OFF -DVT_SANITIZE=ON > "$log" 2>&1 ||
  { cat "$log"; exit 1; }
cmake --build "$build" -j"$jobs" >> "$log" 2>&1 || { tail -80 "$log"; exit 1; }

# Open MPI keeps allocations alive past MPI_Finalize by design (its own docs say to suppress them);
# only leaks whose whole stack lies in Open MPI's libraries are ignored.
supp=$(pwd)/scripts/lsan_suppressions.txt
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1
export LSAN_OPTIONS=suppressions=$supp:print_suppressions=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd "$build"
OMP_NUM_THREADS=2 ctest --output-on-failure -j1 --timeout 3000
