#!/usr/bin/env bash
# The main job: the ShapeWorld miniature. Builds vt, renders ShapeWorld, cuts a ShapeWorld
# vocabulary from the real Qwen2 tokenizer, makes a small VARGPT from random weights, and trains it
# through the paper's pipeline with the same code paths as the full-size model (vargpt train and
# the recipes of train/recipes/shapeworld/):
#   BSQ tokenizer -> stage 1 (projectors) -> stage 2 (understanding + generation mix) ->
#   stage 3 SFT and DPO at 32 px, then at 64 px -> editing SFT
# then evaluates every checkpoint on the held-out test split (vargpt eval: GenEval-style
# generation, understanding with POPE-style questions, editing, and the tokenizer round trip of the
# test images as the ceiling of generation) and writes OUT/REPORT.md.
#
#   scripts/main_job.sh [--quick] [--out DIR]     (default out/demo; --quick: a small smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
out=out/demo
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    *) echo "usage: scripts/main_job.sh [--quick] [--out DIR]"; exit 2 ;;
  esac
  shift
done
build=${VT_BUILD_DIR:-build}
if [ ! -x "$build/vargpt" ] || [ -z "${VT_NO_BUILD:-}" ]; then  # VT_NO_BUILD=1: use the built binary as is
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build "$build" -j"$(nproc)" --target vargpt > /dev/null
fi
case "$build" in /*) vargpt=$build/vargpt ;; *) vargpt=$PWD/$build/vargpt ;; esac
recipes=train/recipes/shapeworld
mkdir -p "$out"
report=$out/REPORT.md
t_start=$(date +%s)
if [ "$quick" = 1 ]; then
  scenes="--train 48 --test 12"; eval_limit=24; steps_scale=0   # steps: --set steps=<small>
else
  scenes="--train 3000 --test 120"; eval_limit=120; steps_scale=1
fi
elapsed() { echo $(( $(date +%s) - $1 )); }
note() { echo "== $*" >&2; }
# The whole run's progress: each stage weighs its optimizer steps (an evaluation weighs 40); the ETA
# is the elapsed time scaled by the weight still to come.
steps_of() { sed -n 's/.*"steps": *\([0-9]*\).*/\1/p' "$recipes/$1.json"; }
stages="bsq_tokenizer stage1 stage2 stage3_sft_32 stage3_dpo_32 stage3_sft_64 stage3_dpo_64 editing"
total_weight=$((5 * 40))
for s in $stages; do total_weight=$((total_weight + $(steps_of "$s"))); done
done_weight=0
progress() {  # progress WEIGHT_DONE_NOW LABEL
  done_weight=$((done_weight + $1))
  local spent eta
  spent=$(elapsed "$t_start")
  eta=$(( done_weight > 0 ? spent * (total_weight - done_weight) / done_weight : 0 ))
  echo "== [$(( 100 * done_weight / total_weight ))%] $2 done; run ${spent} s so far, ETA ${eta} s" >&2
}

# ---- data, vocabulary, the untrained model --------------------------------------------------------
t=$(date +%s)
# Objects 1.5x ShapeWorld's default size (half extents 0.12 and 0.195 of the side): at 64 px the
# 16x16 latent then resolves their outlines (tokenizer round trip 0.22 -> 0.66 of the test prompts).
note "ShapeWorld ($scenes, 64 px, objects x1.5)"
rm -rf "$out/data"
"$vargpt" shapes make --out "$out/data" --size 64 --object-scale 1.5 $scenes --seed 0 --quiet
note "vocabulary cut from the Qwen2 tokenizer"
"$vargpt" tokenizer cut --from third_party/qwen2/tokenizer.json --shapeworld "$out/data" --out "$out/tokenizer.json" > /dev/null
note "a random miniature VARGPT"
rm -rf "$out/init"
"$vargpt" init --spec $recipes/model.json --tokenizer "$out/tokenizer.json" --out "$out/init" --seed 0 > /dev/null
echo "data, vocabulary, init $(elapsed $t)" > "$out/times.txt"

evaluate() {  # evaluate MODEL NAME
  local t
  t=$(date +%s)
  note "evaluate $2"
  "$vargpt" eval --model "$1" --data "$out/data" --split test --limit $eval_limit --out "$out/eval/$2" \
    --tasks gen,understand,edit,recon,loss \
    --json "$out/eval/$2.json" --quiet > "$out/eval/$2.txt"
  echo "evaluate $2 $(elapsed $t)" >> "$out/times.txt"
  progress 40 "evaluation $2"
}
mkdir -p "$out/eval"
evaluate "$out/init" untrained

# ---- the stages ------------------------------------------------------------------------------------
prev=$out/init
run_stage() {  # run_stage RECIPE QUICK_STEPS
  local name=$1 quick_steps=$2 t
  t=$(date +%s)
  note "train $name"
  local extra=""
  [ "$steps_scale" = 0 ] && extra="--set steps=$quick_steps"
  local set_ref=""
  grep -q '"kind": "dpo"' "$recipes/$name.json" && set_ref="--reference $prev"
  prev=$("$vargpt" train --recipe "$recipes/$name.json" --data "$out/data" --init "$prev" $set_ref \
           --out "$out/$name" $extra)
  echo "$name $(elapsed $t)" >> "$out/times.txt"
  progress "$(steps_of "$name")" "$name"
}
# The second argument is the --quick step count: enough for every metric to move off the untrained
# model's (tests/main_job/quick_margins.cpp states the margins), in about a minute.
run_stage bsq_tokenizer 150
run_stage stage1 10
run_stage stage2 80
evaluate "$prev" stage2
run_stage stage3_sft_32 20
run_stage stage3_dpo_32 2
run_stage stage3_sft_64 20
evaluate "$prev" stage3_sft_64
run_stage stage3_dpo_64 2
evaluate "$prev" stage3_dpo_64
run_stage editing 10
evaluate "$prev" final

# ---- the report: REPORT.md, loss_curves.png, samples.png (vargpt report) --------------------------
"$vargpt" report --out "$out" --data "$out/data" --stages "$(echo $stages | tr ' ' ',')" \
  --evals untrained,stage2,stage3_sft_64,stage3_dpo_64,final --times "$out/times.txt" \
  --command "scripts/main_job.sh$([ "$quick" = 1 ] && echo " --quick")" \
  --title "ShapeWorld miniature: a VARGPT-v1.1 trained from random weights on $(nproc) CPU cores" > /dev/null
note "wrote $report in $(elapsed "$t_start") s"
cat "$report"

# ---- the quick run's checks (a CTest runs it): every stage wrote a checkpoint and a log --------------
if [ "$quick" = 1 ]; then
  for stage in bsq_tokenizer stage1 stage2 stage3_sft_32 stage3_dpo_32 stage3_sft_64 stage3_dpo_64 editing; do
    [ -s "$out/$stage/latest" ] || { echo "main_job --quick: stage $stage wrote no checkpoint"; exit 1; }
    [ -s "$out/$stage/log.jsonl" ] || { echo "main_job --quick: stage $stage wrote no log"; exit 1; }
  done
  for e in untrained stage2 stage3_sft_64 stage3_dpo_64 final; do
    grep -q '"overall"' "$out/eval/$e.json" || { echo "main_job --quick: evaluation $e has no generation score"; exit 1; }
    grep -q '"recon"' "$out/eval/$e.json" || { echo "main_job --quick: evaluation $e has no tokenizer round trip"; exit 1; }
  done
  grep -q '"rewards/margins"' "$out/stage3_dpo_64/log.jsonl" || { echo "main_job --quick: DPO logged no margins"; exit 1; }
  echo "main_job --quick: every stage completed"
fi
