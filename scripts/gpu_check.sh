#!/usr/bin/env bash
# gpu_check.sh: the one command for a GPU machine (H100/H200, CUDA 13, PyTorch, 16 cores, offline):
# configure and build the CUDA targets for sm_90, run the CUDA tests, run the GPU benchmarks and the
# PyTorch baselines on the same card, and print a vt-vs-torch table. Budget: the benchmarks end by
# VT_GPU_DEADLINE seconds (default 560) from the script's start, build included; a benchmark pair that
# would start with under 30 s left is skipped, and says so.
#
#   scripts/gpu_check.sh              run everything (logs and table also go to $OUT when it is set)
#   VT_GPU_STAGES="tests ops" scripts/gpu_check.sh
#                                     only some stages: tests (CUDA tests + a `vargpt chat --device
#                                     cuda` check against transformers' tokens), ops (bench_cuda_ops:
#                                     GEMM, elementwise, attention), nn (bench_cuda_nn: linear, norms,
#                                     AdamW, cross-entropy), models (Qwen2-7B-shaped LLM, VAE decode),
#                                     infinity (Infinity-2B 512px generation), vargpt (VARGPT-v1.1
#                                     at full shape: 7B LLM + Infinity-2B + VAE, random bf16 weights,
#                                     one 512px image with CFG, prompt to pixels; goals 0.5 s and
#                                     22 GiB peak), train (bench_gpu_train: one training step of a
#                                     Qwen2-0.5B-shaped LM, B 4 x T 1024, and of Infinity-2B at 256x256,
#                                     batch 8: ms, tokens/s, TFLOP/s, MFU against the card's dense bf16
#                                     peak, peak memory; goal MFU >= 50%; never run on a GPU yet; it runs
#                                     last, so after the other stages it is usually skipped for time:
#                                     run it alone, VT_GPU_STAGES=train (estimated 6 minutes with the
#                                     build)); default: all.
#                                     attn (not in the default): only the attention tests and the
#                                     attention rows of bench_cuda_ops, vt's kernels and cuDNN's
#                                     (VT_ATTENTION_CUDNN), against torch: the short run for tuning
#   scripts/gpu_check.sh --pack-deps  on a development machine: copy the CMake packages vt's build
#                                     needs (nlohmann_json, doctest, google benchmark) into
#                                     build-gpu-deps/, to carry to a GPU machine that lacks them
#
# Build choices for time: only the targets the chosen stages need (libvt, the CUDA tests, test_ops_core,
# vargpt, the stages' benches), one architecture (sm_90), -j16, Ninja when present. CMake older than 3.26 does not know nvcc's C++20 flag, so the configure line names it.
set -uo pipefail
STAGES=" ${VT_GPU_STAGES:-tests ops nn models infinity vargpt train} "
want() { [[ $STAGES == *" $1 "* ]]; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${VT_GPU_BUILD:-$ROOT/build-gpu}
DEPS=$ROOT/build-gpu-deps

if [[ ${1:-} == --pack-deps ]]; then
  rm -rf "$DEPS" && mkdir -p "$DEPS/include" "$DEPS/lib/x86_64-linux-gnu/cmake" "$DEPS/lib/cmake" "$DEPS/share/cmake"
  cp -r /usr/include/nlohmann /usr/include/doctest /usr/include/benchmark /usr/include/stb "$DEPS/include/"
  cp -r /usr/share/cmake/nlohmann_json "$DEPS/share/cmake/"
  cp -r /usr/lib/cmake/doctest "$DEPS/lib/cmake/"
  cp -r /usr/lib/x86_64-linux-gnu/cmake/benchmark "$DEPS/lib/x86_64-linux-gnu/cmake/"
  cp -a /usr/lib/x86_64-linux-gnu/libbenchmark.so* /usr/lib/x86_64-linux-gnu/libbenchmark_main.a \
    "$DEPS/lib/x86_64-linux-gnu/"
  du -sh "$DEPS"
  echo "carry build-gpu-deps with the run (it is git-ignored)"
  exit 0
fi

OUTDIR=${OUT:-$BUILD/gpu-check}
mkdir -p "$OUTDIR" "$BUILD"
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
nvcc --version | tail -1
cmake --version | head -1

step "configure"
prefix=()
[[ -d $DEPS ]] && prefix=(-DCMAKE_PREFIX_PATH="$DEPS")
# cuDNN for conv2d: the CUDA toolkit's own when it has cudnn.h, else PyTorch's pip copy (nvidia/cudnn,
# often a namespace package: __path__, not __file__); its lib dir also goes on LD_LIBRARY_PATH, since
# libcudnn.so.9 loads its engine sub-libraries (libcudnn_cnn.so.9, ...) by name at run time.
cudnn=()
if [[ ! -e $(dirname "$(command -v nvcc)")/../include/cudnn.h ]]; then
  cudnn_root=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2> /dev/null)
  if [[ -n $cudnn_root && -e $cudnn_root/include/cudnn.h ]]; then
    cudnn=(-DCUDNN_ROOT="$cudnn_root")
    export LD_LIBRARY_PATH=$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "cuDNN from PyTorch's package: $cudnn_root"
  fi
fi
gen=()
if command -v ninja > /dev/null && [[ ! -f $BUILD/Makefile ]]; then gen=(-G Ninja); fi
configure() {
  cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DVT_BENCH="$1" -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
    -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 "${prefix[@]}" "${cudnn[@]}" > "$OUTDIR/configure.log" 2>&1
}
bench=1
if ! configure ON; then
  echo "configure with VT_BENCH=ON failed (google benchmark missing?); retrying without the vt benchmarks"
  tail -5 "$OUTDIR/configure.log"
  bench=0
  if ! configure OFF; then
    tail -30 "$OUTDIR/configure.log"
    echo "FAILED: configure (missing packages? run scripts/gpu_check.sh --pack-deps here and carry build-gpu-deps)"
    exit 1
  fi
fi

grep -E "vt: cuDNN" "$OUTDIR/configure.log"

step "build"
targets=(vt)
CUDA_TESTS=(test_cuda_ops test_cuda_nn test_cuda_flash_attention test_cuda_streams test_ops_core test_cudnn_sdpa_graph)
ATTN_TESTS=(test_cuda_flash_attention test_cudnn_sdpa_graph)
want tests && targets+=("${CUDA_TESTS[@]}" vargpt)
want attn && targets+=("${ATTN_TESTS[@]}")
if ((bench)); then
  want ops && targets+=(bench_cuda_ops)
  want attn && targets+=(bench_cuda_ops)
  want nn && targets+=(bench_cuda_nn)
  want models && targets+=(bench_gpu_models)
  want infinity && targets+=(bench_gpu_infinity)
  want vargpt && targets+=(bench_gpu_vargpt)
  want train && targets+=(bench_gpu_train)
fi
if ! cmake --build "$BUILD" -j16 --target "${targets[@]}" > "$OUTDIR/build.log" 2>&1; then
  grep -E "error|Error" "$OUTDIR/build.log" | head -40
  echo "FAILED: build (full log in $OUTDIR/build.log)"
  exit 1
fi

step "tests"
export OMP_NUM_THREADS=16
results=()  # "name: PASS" or "name: FAIL (...)", one per check, for the summary
record() {  # record NAME RC [DETAIL]
  if [[ $2 == 0 ]]; then results+=("$1: PASS${3:+ -- $3}"); else results+=("$1: FAIL (rc $2)${3:+ -- $3}"); fi
  echo "${results[-1]}"
}
run_test() {  # run_test NAME TIMEOUT: a doctest binary, its log's tail, its counts
  local log="$OUTDIR/$1.log" rc
  timeout "$2" "$BUILD/$1" > "$log" 2>&1
  rc=$?
  grep -vE "^\s*$" "$log" | tail -25
  record "$1" $rc "$(grep -E '^\[doctest\] (test cases|assertions)' "$log" | tr -s ' ' | tr '\n' ' ')"
}
if want attn && ! want tests; then
  for t in "${ATTN_TESTS[@]}"; do run_test "$t" 150; done
fi
if want tests; then
  for t in "${CUDA_TESTS[@]}"; do run_test "$t" 150; done
  # The tiny Qwen2-VL chat fixture on the GPU: the greedy ids must still equal transformers'.
  timeout 60 "$BUILD/vargpt" chat --model "$ROOT/tests/fixtures/chat_tiny" --image "$ROOT/tests/fixtures/chat_tiny/image.png" \
    --prompt "What is in the picture?" --max-new-tokens 24 --print-ids --device cuda > "$OUTDIR/chat_cuda.log" 2>&1
  rc=$?
  grep -q "$(cat "$ROOT/tests/fixtures/chat_tiny/expected_ids.txt")" "$OUTDIR/chat_cuda.log" || rc=1
  tail -3 "$OUTDIR/chat_cuda.log"
  record "vargpt chat --device cuda (tiny Qwen2-VL, ids vs transformers)" $rc
  # The tokenizer command on the GPU (tiny fixture VAE): encode + decode run and report a PSNR.
  rc=0
  { "$BUILD/vargpt" shapes make --out "$BUILD/vae_gpu" --size 64 --train 1 --test 0 --quiet &&
    timeout 60 "$BUILD/vargpt" vae --vae "$ROOT/tests/fixtures/bsq_vae.safetensors" --device cuda \
      --roundtrip "$BUILD/vae_gpu/train/images/000000.png" --scales 1,2,4,8,16,32; } > "$OUTDIR/vae_cuda.log" 2>&1 || rc=1
  grep -q PSNR "$OUTDIR/vae_cuda.log" || rc=1
  tail -2 "$OUTDIR/vae_cuda.log"
  record "vargpt vae --device cuda (round trip)" $rc
fi

step "benchmarks"
: > "$OUTDIR/vt_bench.txt"
: > "$OUTDIR/torch.txt"
# Each pair: the vt program, then its PyTorch baseline joining the vt lines into a table.
# The whole script must finish inside the device session's per-call limit: each pair gets at most
# what is left of VT_GPU_DEADLINE seconds (default 560), and is skipped when under 30 s are left.
DEADLINE=${VT_GPU_DEADLINE:-560}
left() { echo $((DEADLINE - (SECONDS - t0))); }
run_pair() {  # run_pair NAME VT_TIMEOUT TORCH_SCRIPT TORCH_TIMEOUT [ARGS]: ARGS go to both programs
  local name=$1 vt_to=$2 script=$3 torch_to=$4 args=(${5:-})
  ((bench)) || return 0
  if (($(left) < 30)); then
    echo "SKIPPED $name: $(left) s left of the ${DEADLINE} s budget"
    return 0
  fi
  ((vt_to > $(left) / 2)) && vt_to=$(($(left) / 2))
  step "bench $name"
  timeout "$vt_to" "$BUILD/$name" "${args[@]}" | tee "$OUTDIR/$name.txt"
  ((torch_to > $(left) - 5)) && torch_to=$(($(left) - 5))
  ((torch_to < 10)) && { echo "SKIPPED torch baseline of $name: no time left"; return 0; }
  timeout "$torch_to" python3 "$ROOT/bench/$script" --vt "$OUTDIR/$name.txt" "${args[@]}" > "$OUTDIR/$name.torch.txt" 2>&1
  tail -40 "$OUTDIR/$name.torch.txt"
  cat "$OUTDIR/$name.torch.txt" >> "$OUTDIR/torch.txt"
}
want ops && run_pair bench_cuda_ops 120 torch_gpu_baseline.py 90
want attn && ! want ops && run_pair bench_cuda_ops 90 torch_gpu_baseline.py 60 "--only attn"
want nn && run_pair bench_cuda_nn 60 torch_gpu_nn.py 60
want models && run_pair bench_gpu_models 120 torch_gpu_models.py 120
if want models && ((bench)) && (($(left) > 60)); then
  step "VAE rows again on the im2col conv path (VT_CONV_IM2COL=1), for comparison"
  VT_CONV_IM2COL=1 timeout 40 "$BUILD/bench_gpu_models" --only vae | grep "^vt " | sed 's/^vt /im2col /'
fi
if want models && ((bench)) && (($(left) > 60)); then
  step "VAE rows again with one block per GroupNorm group (VT_GROUP_NORM_SPLIT=0), for comparison"
  VT_GROUP_NORM_SPLIT=0 timeout 40 "$BUILD/bench_gpu_models" --only vae | grep "^vt " | sed 's/^vt /gn_groups /'
fi
if want models && ((bench)) && (($(left) > 90)); then
  step "Qwen2 rows again with attention on cuDNN's fused SDPA (VT_ATTENTION_CUDNN=1), for comparison"
  VT_ATTENTION_CUDNN=1 timeout 60 "$BUILD/bench_gpu_models" --only qwen2 | grep "^vt " | sed 's/^vt /cudnn_attn /'
fi
want infinity && run_pair bench_gpu_infinity 120 torch_gpu_infinity.py 120
if want infinity && ((bench)) && (($(left) > 90)); then
  step "Infinity rows again with attention on cuDNN's fused SDPA (VT_ATTENTION_CUDNN=1), for comparison"
  VT_ATTENTION_CUDNN=1 timeout 80 "$BUILD/bench_gpu_infinity" --runs 2 --no-image | grep "^vt " | sed 's/^vt /cudnn_attn /'
fi
# VARGPT-v1.1 end to end: building the 22 GB model in memory takes most of a minute on each side.
want vargpt && run_pair bench_gpu_vargpt 240 torch_gpu_vargpt.py 240
# One training step per model, vt then transformers / the reference Infinity (both rows in one program:
# about 40 s for vt, a minute for torch with its imports, at the default shapes on an H100; estimated).
want train && run_pair bench_gpu_train 180 torch_gpu_train.py 180

step "summary"
{
  printf '%s\n' "${results[@]}"
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1
  grep -E "^benchmark " "$OUTDIR/torch.txt"
} | tee "$OUTDIR/summary.txt"
echo "total $((SECONDS - t0)) s; logs in $OUTDIR"
! printf '%s\n' "${results[@]}" | grep -q ": FAIL"
