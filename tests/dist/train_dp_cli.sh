#!/bin/sh
# `mpirun -np N vargpt train` on the tiny VARGPT checkpoint and a small ShapeWorld set, against one
# process. With self-correction and condition dropout off (their draws are seeded per global micro-
# batch on N ranks, sequentially in one process), a data-parallel run is the one-process run with
# accumulation, bit for bit: 2 steps of global batch 4 on one process == step 1 on 4 ranks with ZeRO-3,
# resumed for step 2 on 2 ranks with ZeRO-1 == step 1 on 2 ranks with ZeRO-2 resumed on one process.
# Rank 0 alone writes the log and the sample grids (the one-process run and the 4-rank one draw them,
# which changes no bit); every rank writes its optimizer shard. quirks.sos_single_row (Q2 fix)
# trains the same weights on 2 ranks with ZeRO-3. DPO on 2 ranks with ZeRO-3 (the reference sharded
# forward-only) logs the one-process loss and metrics.
# Usage: train_dp_cli.sh VARGPT FIXTURES_DIR
set -eu
command -v mpirun > /dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
vargpt=$1
tiny=$2/vargpt_tiny
run="sh $(cd "$(dirname "$0")" && pwd)/mpi_run.sh"
dir=train_dp_cli
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
fail() { echo "train_dp_cli: $*"; exit 1; }
"$vargpt" shapes make --out sw --size 64 --train 8 --test 2 --seed 4 --quiet > /dev/null
cat > sft.json <<'JSON'
{"name": "tiny_sft", "kind": "sft", "freeze": "stage3", "gen_size": 256, "global_batch": 4, "micro_batch": 1,
 "lr": 1e-3, "steps": 2, "warmup_ratio": 0, "cond_drop": 0, "bsc": {"strength": 0}, "workers": 0,
 "data": [{"file": "train/generation.json", "kind": "generation", "root": "."}]}
JSON
train() { "$@" --recipe sft.json --data sw --init "$tiny" --quiet; }
grids="--set sample_every=1 --set sample_prompts=2"
train "$vargpt" train --out one $grids > /dev/null
train $run 4 "$vargpt" train --out dp --set steps=1 --set zero_stage=3 $grids > dp4.out
# Rank 0 draws the grid from the gathered ZeRO-3 weights: the one-process grid, byte for byte.
cmp -s one/samples/step-000001.png dp/samples/step-000001.png || fail "the step-1 grid on 4 ranks (ZeRO-3) differs"
ls dp/checkpoint-1/optimizer-rank0000[0-3]-of-00004.safetensors > /dev/null || fail "ZeRO-3 on 4 ranks wrote no 4 shards"
[ "$(wc -l < dp/log.jsonl)" -eq 1 ] || fail "4 ranks wrote $(wc -l < dp/log.jsonl) log lines for 1 step"
train $run 2 "$vargpt" train --out dp --resume --set zero_stage=1 > /dev/null
cmp -s one/checkpoint-2/model.safetensors dp/checkpoint-2/model.safetensors \
  || fail "4 ranks (ZeRO-3) resumed on 2 (ZeRO-1) differ from one process"
train $run 2 "$vargpt" train --out dp2 --set steps=1 --set zero_stage=2 > /dev/null
train "$vargpt" train --out dp2 --resume > /dev/null
cmp -s one/checkpoint-2/model.safetensors dp2/checkpoint-2/model.safetensors \
  || fail "2 ranks (ZeRO-2) resumed on one process differ from one process"
! cmp -s dp/checkpoint-1/model.safetensors dp/checkpoint-2/model.safetensors || fail "step 2 left the weights as they were"
# The Q2 fix trains only sos_embedding's read row; with weight decay 0 the weights are the faithful
# ones. ZeRO-3 saves the gathered row merged into the whole table, and a one-process resume reads it back.
train $run 2 "$vargpt" train --out row --set steps=1 --set zero_stage=3 --set quirks.sos_single_row=true > /dev/null
train "$vargpt" train --out row --resume --set quirks.sos_single_row=true > /dev/null
cmp -s one/checkpoint-2/model.safetensors row/checkpoint-2/model.safetensors \
  || fail "quirks.sos_single_row (2 ranks, ZeRO-3, resumed on one process) differs from the faithful run"
# DPO under ZeRO-3 on 2 ranks: the policy is the SFT checkpoint, the reference the tiny model, sharded
# forward-only (each rank holds half of it, gathered block by block). The loss and every DPO metric
# (functions of the forwards alone) are the one-process run's. ZeRO-3 runs every trainable block
# under recomputation (nn/block.h), and the recomputed blocks hand back the gradients of what they
# share (the condition, the cross-attention memory) in another summation order: the weights equal a
# one-process run with activation_checkpointing, bit for bit (without it they differ in the last
# bits: grad_norm 209.00474032 against 209.00474405 on this model).
cat > dpo.json <<'JSON'
{"name": "tiny_dpo", "kind": "dpo", "freeze": "stage3", "gen_size": 256, "global_batch": 2, "micro_batch": 1,
 "lr": 1e-3, "steps": 1, "warmup_ratio": 0, "cond_drop": 0, "bsc": {"strength": 0}, "workers": 0,
 "reference": "@previous", "data": [{"file": "train/preference.json", "kind": "preference", "root": "."}]}
JSON
dpo() { "$@" --recipe dpo.json --data sw --init one/checkpoint-2 --reference "$tiny" --quiet; }
dpo "$vargpt" train --out dpo1 > /dev/null
dpo $run 2 "$vargpt" train --out dpo2 --set zero_stage=3 > /dev/null
metrics() { grep -o '"\(loss\|logps/[a-z]*\|logits/[a-z]*\|rewards/[a-z]*\)":[^,}]*' "$1"; }
[ "$(metrics dpo1/log.jsonl | wc -l)" -eq 9 ] || fail "the DPO log lacks metrics: $(cat dpo1/log.jsonl)"
[ "$(metrics dpo1/log.jsonl)" = "$(metrics dpo2/log.jsonl)" ] \
  || fail "DPO metrics on 2 ranks (ZeRO-3, sharded reference) differ: $(metrics dpo1/log.jsonl) vs $(metrics dpo2/log.jsonl)"
dpo "$vargpt" train --out dpo1ck --set activation_checkpointing=true > /dev/null
cmp -s dpo1ck/checkpoint-1/model.safetensors dpo2/checkpoint-1/model.safetensors \
  || fail "DPO on 2 ranks (ZeRO-3) differs from one process with activation checkpointing"
# The logged losses agree with the one-process log (the means over ranks, printed to 6 digits).
l1=$(grep -o '"loss":[^,]*' one/log.jsonl | head -1); l4=$(grep -o '"loss":[^,]*' dp/log.jsonl | head -1)
[ "$l1" = "$l4" ] || fail "step 1 loss $l1 (one process) vs $l4 (4 ranks)"
echo "train_dp_cli: ok"
