#!/usr/bin/env bash
# The main job, until the ShapeWorld demo trains a miniature VARGPT end to end: build vt, render a
# ShapeWorld dataset (generation pairs, understanding conversations, edits, preferences), and
# score its ground-truth images and answers with the GenEval-style evaluator.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target vargpt
out=${1:-out/shapeworld}
./build/vargpt shapes make --out "$out" --size 128 --train 2000 --test 500 --seed 0
./build/vargpt shapes eval gen --data "$out" --split test
./build/vargpt shapes eval edit --data "$out" --split test
