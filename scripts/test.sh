#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, configures (CUDA sources are compiled too
# when nvcc is present, so a CUDA compile error fails here), builds everything, runs CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVT_CUDA=AUTO > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$jobs" >> build.log 2>&1 || { tail -80 build.log; exit 1; }
cd build
OMP_NUM_THREADS=2 ctest --output-on-failure -j1 --timeout 1500
