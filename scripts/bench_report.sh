#!/usr/bin/env bash
# Runs the CPU benchmarks next to their baselines, in one go on one machine, and prints the
# numbers with the line counts of the tensor library. Usage: scripts/bench_report.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DVT_BENCH=ON > /dev/null
cmake --build "$build" -j"$(nproc)" > /dev/null || { echo "build failed"; exit 1; }
export OMP_NUM_THREADS=2
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"
echo
echo "== tensor core (bench_tensor): elementwise add vs memcpy, small-op chain"
"$build"/bench_tensor --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null \
  | grep -E "median|Benchmark" | tee /tmp/vt_bench_tensor.$$
torch_line=$(python3 bench/small_ops_torch.py 2>/dev/null) || torch_line=""
if [ -n "$torch_line" ]; then
  echo "$torch_line"
  vt_us=$(grep small_op_chain /tmp/vt_bench_tensor.$$ | sed -E 's/.*us_per_op=([0-9.]+).*/\1/')
  torch_us=$(echo "$torch_line" | sed -E 's/.*: ([0-9.]+) us\/op.*/\1/')
  awk -v a="$vt_us" -v b="$torch_us" 'BEGIN { if (b > 0) printf "small-op chain: vt %.3f us/op, torch %.3f us/op, ratio vt/torch %.3f (target <= 0.25)\n", a, b, a / b }'
else
  echo "(python3/torch missing: no PyTorch baseline)"
fi
rm -f /tmp/vt_bench_tensor.$$
echo
if [ -x "$build"/bench_matmul ]; then
  echo "== f32 GEMM, 2 threads (OpenBLAS with OPENBLAS_CORETYPE/L2_SIZE unset: its AVX-512 kernels)"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 "$build"/bench_matmul 2>/dev/null | grep -vE "^(Run|\*\*\*|CPU|  L|Load)"
  echo
fi
for b in bench_nn_functional bench_nn_conv bench_nn_attention; do
  if [ -x "$build/$b" ]; then
    echo "== $b"
    "$build/$b" 2>/dev/null | grep -vE "^(Run|\*\*\*|CPU|  L|Load)"
    py=bench/torch_${b#bench_}.py
    [ -f "$py" ] && python3 "$py" 2>/dev/null
    echo
  fi
done
# The model rows: vt program, then its baseline (torch reference written from the spec, or
# transformers / Hugging Face tokenizers), same machine, same thread count.
pair() {  # pair VT_BENCH BASELINE_SCRIPT [ARGS...]
  local b=$1 py=$2
  shift 2
  [ -x "$build/$b" ] || return 0
  echo "== $b"
  "$build/$b" 2>/dev/null | grep -vE "^(Run|\*\*\*|CPU|  L|Load)"
  python3 "bench/$py" "$@" 2>/dev/null | grep -v Warning || echo "(baseline $py failed: python3/torch/transformers missing?)"
  echo
}
pair bench_tokenizer hf_tokenizer.py
pair bench_bsq_vae torch_bsq_vae.py
pair bench_infinity torch_infinity.py
pair bench_qwen2 torch_qwen2.py --decode 32
# VARGPT-v1.1 generating one 256x256 image with CFG (tiny fixture, small random checkpoint): each vt
# config in its own process (its peak RSS is that config's), then the reference loop, which joins
# them into the ratios vt/torch (goal <= 0.5) and peak RSS / weight bytes (goal <= 1.15). Passive
# OpenMP waits on both sides: on a shared machine spinning workers bill their waits as CPU time.
if [ -x "$build"/bench_vargpt ]; then
  echo "== bench_vargpt (one 256x256 image with CFG, prompt to pixels; vs tools/vargpt_reference.py)"
  small="$build/vargpt_small"
  [ -f "$small/config.json" ] || "$build"/bench_vargpt --make-small "$small"
  outs=()
  for c in tiny small; do
    out=/tmp/vt_bench_vargpt_$c.$$.json
    OMP_WAIT_POLICY=passive "$build"/bench_vargpt --small-dir "$small" --benchmark_filter="vargpt/$c/256" --benchmark_out="$out" \
      --benchmark_out_format=json 2>/dev/null | grep -vE "^(Run|\*\*\*|CPU|  L|Load|---|Benchmark)"
    outs+=("$out")
  done
  OMP_WAIT_POLICY=passive python3 bench/torch_vargpt.py --small-dir "$small" --vt "${outs[@]}" 2>/dev/null | grep -vE "Warning|Qwen2VLRotaryEmbedding" \
    || echo "(baseline torch_vargpt.py failed: python3/torch/transformers missing?)"
  rm -f "${outs[@]}"
  echo "== bench_vargpt train_step (one tiny-VARGPT training step, forward + backward; vs the reference's train_forward)"
  out=/tmp/vt_bench_vargpt_train.$$.json
  OMP_WAIT_POLICY=passive "$build"/bench_vargpt --benchmark_filter=train_step --benchmark_out="$out" \
    --benchmark_out_format=json 2>/dev/null | grep -vE "^(Run|\*\*\*|CPU|  L|Load|---|Benchmark)"
  OMP_WAIT_POLICY=passive python3 bench/torch_vargpt_train.py --vt "$out" 2>/dev/null | grep -vE "Warning|Qwen2VLRotaryEmbedding" \
    || echo "(baseline torch_vargpt_train.py failed: python3/torch/transformers missing?)"
  rm -f "$out"
  echo
fi
echo "== size of the tensor library"
wc -l include/vt/*.h include/vt/*/*.h src/*.cpp src/*.h src/*.inc 2>/dev/null | tail -1 | sed 's/total/lines in include\/vt and src/'
