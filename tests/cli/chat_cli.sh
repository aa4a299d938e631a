#!/bin/sh
# vargpt chat end to end on a tiny random Qwen2-VL checkpoint (tools/gen_chat_fixture.py): config,
# tokenizer, preprocessor config and weights are read from the directory, the image goes through the
# processor and the ViT, and the 24 greedy tokens must equal transformers' generate(). Then bad input:
# a missing image, an image for a text-only request pattern, malformed options, --device cuda
# without a GPU.
# Usage: chat_cli.sh VARGPT FIXTURES_DIR
set -eu
vargpt=$1
fx=$2/chat_tiny
dir=chat_cli
rm -rf "$dir" && mkdir -p "$dir"
"$vargpt" chat --model "$fx" --image "$fx/image.png" --prompt "What is in the picture?" --max-new-tokens 24 \
  --print-ids > "$dir/out.txt"
grep "^ids:" "$dir/out.txt" > "$dir/ids.txt"
if ! cmp -s "$dir/ids.txt" "$fx/expected_ids.txt"; then
  echo "generated ids differ from transformers':"; cat "$dir/ids.txt" "$fx/expected_ids.txt"; exit 1
fi
# Sampling with a seed is reproducible.
"$vargpt" chat --model "$fx" --prompt "hello" --sample --temperature 0.8 --top-k 50 --seed 7 --max-new-tokens 12 --print-ids > "$dir/s1.txt"
"$vargpt" chat --model "$fx" --prompt "hello" --sample --temperature 0.8 --top-k 50 --seed 7 --max-new-tokens 12 --print-ids > "$dir/s2.txt"
cmp "$dir/s1.txt" "$dir/s2.txt"
expect_error() {  # expect_error PATTERN COMMAND...
  pattern=$1; shift
  if "$@" > "$dir/err.txt" 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -q "$pattern" "$dir/err.txt" || { echo "missing '$pattern' in:"; cat "$dir/err.txt"; exit 1; }
}
expect_error "nothere.png" "$vargpt" chat --model "$fx" --image "$dir/nothere.png" --prompt "hi"
expect_error "top-p" "$vargpt" chat --model "$fx" --prompt "hi" --sample --top-p 0
expect_error "config.json" "$vargpt" chat --model "$dir" --prompt "hi"
printf 'not json' > "$dir/bad.json"
expect_error "bad.json" "$vargpt" chat --model "$fx" --tokenizer "$dir/bad.json" --prompt "hi"
# --max-new-tokens past max_position_embeddings (512 here) is clamped with a warning: prompt + reply
# stay within 512 (issue #19: it generated past the limit without a word); a prompt that fills the
# limit is an error.
"$vargpt" chat --model "$fx" --prompt "hello" --max-new-tokens 100000 --print-ids > "$dir/long.txt" 2> "$dir/long.err"
grep -q "warning: --max-new-tokens 100000 would go past max_position_embeddings 512" "$dir/long.err" || {
  echo "no clamp warning:"; cat "$dir/long.err"; exit 1; }
used=$(sed -n 's/^chat: prompt \([0-9]*\) tokens, \([0-9]*\) new tokens.*/\1 + \2/p' "$dir/long.err")
[ -n "$used" ] && [ $(( $used )) -le 512 ] || { echo "prompt + reply = $used, past 512:"; cat "$dir/long.err"; exit 1; }
long_prompt=$(yes "word" | head -n 600 | tr '\n' ' ')
expect_error "fills the model's max_position_embeddings 512" "$vargpt" chat --model "$fx" --prompt "$long_prompt"
# tokenizer.json with an added token id that does not fit 32 bits: an error naming the file, the
# token and the id (it was a heap overflow).
sed 's/"id": *280,/"id": 4294967576,/' "$fx/tokenizer.json" > "$dir/tokenizer_big_id.json"
expect_error "tokenizer_big_id.json: token '<|endoftext|>' has id 4294967576" \
  "$vargpt" chat --model "$fx" --tokenizer "$dir/tokenizer_big_id.json" --prompt "hi"
# --device cuda where no GPU answers: a clear error, whether vt was built with CUDA or without.
if ! nvidia-smi -L > /dev/null 2>&1; then
  expect_error "no CUDA device is visible\|has no CUDA backend" "$vargpt" chat --model "$fx" --prompt "hi" --device cuda
fi
echo "chat cli: ok"
