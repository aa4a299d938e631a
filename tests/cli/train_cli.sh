#!/bin/sh
# vargpt train end to end on the tiny VARGPT checkpoint and a small ShapeWorld dataset: a stage-3 SFT
# recipe writes a checkpoint and a JSON-lines log; --resume continues it (the step count and the
# data position come back); a DPO recipe chained with --previous starts at ln 2 against its own
# reference; the BSQ tokenizer recipe trains vae_local; the last checkpoint generates an image.
# A DPO run with sample_every draws its grid. Then bad input: an unknown recipe key, a --set of an
# unknown key, a missing data file, a negative sample_every, sample grids over data with no
# generation records.
# Usage: train_cli.sh VARGPT FIXTURES_DIR
set -eu
vargpt=$1
tiny=$2/vargpt_tiny
dir=train_cli
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
fail() { echo "train_cli: $*"; exit 1; }
"$vargpt" shapes make --out sw --size 64 --train 6 --test 2 --seed 4 --quiet > /dev/null
cat > sft.json <<'JSON'
{"name": "tiny_sft", "kind": "sft", "freeze": "stage3", "gen_size": 256, "global_batch": 2, "micro_batch": 1,
 "lr": 1e-3, "steps": 2, "warmup_ratio": 0, "data": [{"file": "train/generation.json", "kind": "generation", "root": "."}]}
JSON
"$vargpt" train --recipe sft.json --data sw --init "$tiny" --out out/sft --quiet > sft.out
[ "$(cat sft.out)" = "out/sft/checkpoint-2" ] || fail "sft printed '$(cat sft.out)'"
[ "$(wc -l < out/sft/log.jsonl)" -eq 2 ] || fail "sft log has $(wc -l < out/sft/log.jsonl) lines, expected 2"
grep -q '"image_loss"' out/sft/log.jsonl || fail "sft log has no image_loss"
"$vargpt" train --recipe sft.json --data sw --init "$tiny" --out out/sft --quiet --resume --set steps=3 > resume.out
[ "$(cat resume.out)" = "out/sft/checkpoint-3" ] || fail "resume printed '$(cat resume.out)'"
[ "$(wc -l < out/sft/log.jsonl)" -eq 3 ] || fail "resumed log has $(wc -l < out/sft/log.jsonl) lines, expected 3"
# 3 steps x 2 micro-batches = 6 examples = one whole epoch of the 6 records.
grep -A5 '"data_position"' out/sft/checkpoint-3/trainer_state.json | tr -d ' \n' | grep -q '"epoch":1,"epoch_size":6,"index":0' \
  || fail "the data position after 6 examples is not the start of epoch 1: $(grep -A5 data_position out/sft/checkpoint-3/trainer_state.json)"
cat > dpo.json <<'JSON'
{"name": "tiny_dpo", "kind": "dpo", "freeze": "stage3", "gen_size": 256, "global_batch": 1, "micro_batch": 1,
 "lr": 1e-6, "steps": 1, "warmup_ratio": 0, "init": "@previous", "reference": "@previous",
 "data": [{"file": "train/preference.json", "kind": "preference", "root": "."}]}
JSON
"$vargpt" train --recipe dpo.json --data sw --previous out/sft --out out/dpo --quiet > /dev/null
grep -q '"loss":0.693147' out/dpo/log.jsonl || fail "DPO step 1 is not ln 2: $(cat out/dpo/log.jsonl)"
# A sample grid at the last step, its prompts taken from the preference records; the log names it.
"$vargpt" train --recipe dpo.json --data sw --previous out/sft --out out/dpo_grid --quiet --set sample_every=1 \
  --set sample_prompts=2 > /dev/null
[ -s out/dpo_grid/samples/step-000001.png ] || fail "sample_every=1 wrote no out/dpo_grid/samples/step-000001.png"
grep -q '"samples":"samples/step-000001.png"' out/dpo_grid/log.jsonl || fail "the log does not name the grid"
cat > vae.json <<'JSON'
{"name": "tiny_vae", "kind": "vae", "gen_size": 256, "global_batch": 1, "micro_batch": 1, "lr": 1e-4, "steps": 1,
 "warmup_ratio": 0, "data": [{"file": "train/generation.json", "kind": "generation", "root": "."}]}
JSON
"$vargpt" train --recipe vae.json --data sw --init out/dpo/checkpoint-1 --out out/vae --quiet > /dev/null
grep -q '"psnr"' out/vae/log.jsonl || fail "the vae log has no psnr"
# The encoder's and the decoder's gradient norms, logged apart, make up the whole (the VAE trains
# nothing else): enc^2 + dec^2 = grad_norm^2.
field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" out/vae/log.jsonl | head -1; }
enc=$(field 'grad_norm\/encoder'); dec=$(field 'grad_norm\/decoder'); all=$(field grad_norm)
[ -n "$enc" ] && [ -n "$dec" ] && [ -n "$all" ] || fail "the vae log lacks grad_norm/encoder, grad_norm/decoder or grad_norm"
awk -v e="$enc" -v d="$dec" -v a="$all" 'BEGIN { r = (e*e + d*d) / (a*a); exit !(e > 0 && d > 0 && r > 0.999999 && r < 1.000001) }' ||
  fail "encoder $enc and decoder $dec gradient norms do not make up grad_norm $all"
"$vargpt" generate --model out/vae/checkpoint-1 --prompt "a red circle" --reply "Here." --size 256 --out g.png --quiet > /dev/null
[ -s g.png ] || fail "the trained checkpoint did not generate"
# Bad input: named errors, exit status 1.
echo '{"name": "x", "lr": 1e-4, "learning_rate": 1}' > bad.json
if "$vargpt" train --recipe bad.json --init "$tiny" 2> err.txt; then fail "an unknown recipe key was accepted"; fi
grep -q "learning_rate" err.txt || fail "the unknown key is not named: $(cat err.txt)"
if "$vargpt" train --recipe sft.json --init "$tiny" --set stepz=3 2> err.txt; then fail "--set stepz was accepted"; fi
grep -q "stepz" err.txt || fail "--set's unknown key is not named: $(cat err.txt)"
if "$vargpt" train --recipe sft.json --init "$tiny" --data nowhere --out out/x 2> err.txt; then fail "a missing data file was accepted"; fi
grep -q "generation.json" err.txt || fail "the missing data file is not named: $(cat err.txt)"
if "$vargpt" train --recipe sft.json --init "$tiny" --set sample_every=-5 2> err.txt; then fail "sample_every=-5 was accepted"; fi
grep -q "sample_every -5" err.txt || fail "the negative sample_every is not named: $(cat err.txt)"
cat > und.json <<'JSON'
{"name": "tiny_und", "kind": "sft", "freeze": "stage3", "gen_size": 256, "global_batch": 1, "micro_batch": 1,
 "lr": 1e-3, "steps": 1, "sample_every": 1, "data": [{"file": "train/understanding.json", "kind": "understanding", "root": "."}]}
JSON
if "$vargpt" train --recipe und.json --data sw --init "$tiny" --out out/und --quiet 2> err.txt; then
  fail "sample grids over data without generation records were accepted"; fi
grep -q "no generation or preference records" err.txt || fail "grids without prompts are not explained: $(cat err.txt)"
echo "train_cli: ok"
