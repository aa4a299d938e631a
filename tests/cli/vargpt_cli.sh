#!/bin/sh
# vargpt generate / edit / chat end to end on the tiny random VARGPT-v1.1 checkpoint
# (tools/gen_vargpt_fixtures.py; its VAE down-samples by 16, so images are 256x256 at --size 256):
# a forced reply writes a 256x256 PNG, seeds are reproducible and matter, --n names its files, a
# batch of prompts gives the images of the prompts run alone, edit reads a source image, chat draws
# an image when the reply asks for one. Then bad input: a size of no template, a corrupt image, and
# checkpoints without generation tensors (generate refuses and points at chat, which still runs).
# Usage: vargpt_cli.sh VARGPT FIXTURES_DIR
set -eu
vargpt=$1
fx=$2/vargpt_tiny
dir=vargpt_cli
rm -rf "$dir" && mkdir -p "$dir"

fail() { echo "vargpt cli: $*"; exit 1; }
# png_size FILE: "WxH" of a PNG (from its IHDR chunk), or a failure when FILE is not a PNG.
png_size() {
  [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"
  od -An -tu1 -j16 -N8 "$1" | awk '{ print $3 * 256 + $4 "x" $7 * 256 + $8 }'
}
expect_png() {  # expect_png FILE WxH
  [ -f "$1" ] || fail "missing $1"
  [ "$(png_size "$1")" = "$2" ] || fail "$1 is $(png_size "$1"), expected $2"
}
# The t2i case of the fixture (reference.json): its user prompt and forced reply.
prompt="Please create a painting of a red circle."
reply="Here's a painting."
gen() { "$vargpt" generate --model "$fx" --size 256 --quiet "$@"; }

# (a) a forced reply writes exactly --out, prints its path; the same seed gives the same bytes, another seed others.
gen --prompt "$prompt" --reply "$reply" --seed 3 --out "$dir/a.png" > "$dir/a.txt"
expect_png "$dir/a.png" 256x256
[ "$(cat "$dir/a.txt")" = "$dir/a.png" ] || fail "stdout should be the written path, got: $(cat "$dir/a.txt")"
gen --prompt "$prompt" --reply "$reply" --seed 3 --out "$dir/b.png" > /dev/null
cmp "$dir/a.png" "$dir/b.png" || fail "the same seed gave different images"
gen --prompt "$prompt" --reply "$reply" --seed 4 --out "$dir/c.png" > /dev/null
if cmp -s "$dir/a.png" "$dir/c.png"; then fail "seeds 3 and 4 gave the same image"; fi

# (b) --n 2: FILE_0_0.png and FILE_0_1.png (seeds S and S + 1), and no FILE.png.
gen --prompt "$prompt" --reply "$reply" --seed 3 --n 2 --out "$dir/n.png" > "$dir/n.txt"
printf '%s\n%s\n' "$dir/n_0_0.png" "$dir/n_0_1.png" | cmp -s - "$dir/n.txt" || fail "--n 2 printed: $(cat "$dir/n.txt")"
[ ! -e "$dir/n.png" ] || fail "--n 2 also wrote n.png"
expect_png "$dir/n_0_1.png" 256x256
cmp "$dir/n_0_0.png" "$dir/a.png" || fail "image 0 of --n 2 --seed 3 differs from --seed 3 alone"
gen --prompt "$prompt" --reply "$reply" --seed 4 --out "$dir/n1.png" > /dev/null
cmp "$dir/n_0_1.png" "$dir/n1.png" || fail "image 1 of --n 2 --seed 3 differs from --seed 4 alone"

# (c) a prompts file (blank lines skipped), decoded replies of different lengths, in one batch of 3
# and in batches of 2 + 1: prompt j's image equals the prompt run alone with seed S + j.
printf '%s\n\nA blue square.\nDraw three green triangles next to each other, please.\n' "$prompt" > "$dir/prompts.txt"
gen --prompts "$dir/prompts.txt" --max-text-tokens 12 --seed 5 --batch 3 --out "$dir/p.png" > "$dir/p.txt"
[ "$(wc -l < "$dir/p.txt")" -eq 3 ] || fail "3 prompts printed: $(cat "$dir/p.txt")"
gen --prompts "$dir/prompts.txt" --max-text-tokens 12 --seed 5 --batch 2 --out "$dir/q.png" > /dev/null
j=0
grep -v '^$' "$dir/prompts.txt" | while IFS= read -r line; do
  gen --prompt "$line" --max-text-tokens 12 --seed $((5 + j)) --out "$dir/single$j.png" > /dev/null
  cmp "$dir/p_${j}_0.png" "$dir/single$j.png" || fail "prompt $j: the batch of 3 differs from the prompt alone"
  cmp "$dir/q_${j}_0.png" "$dir/single$j.png" || fail "prompt $j: batches of 2 differ from the prompt alone"
  j=$((j + 1))
done

# (d) edit: the fixture's edit instruction with the <image> marker, and a plain one (image first).
src=$2/qwen2_vl/img2.png
"$vargpt" edit --model "$fx" --image "$src" --prompt "Transform this image <image> to match the style of a watercolor" \
  --reply "The output image is: " --size 256 --quiet --out "$dir/edit.png" > /dev/null
expect_png "$dir/edit.png" 256x256
"$vargpt" edit --model "$fx" --image "$src" --prompt "Make it blue." --max-text-tokens 8 --size 256 --quiet \
  --out "$dir/edit2.png" > /dev/null
expect_png "$dir/edit2.png" 256x256

# chat on the VARGPT checkpoint: some sampled reply asks for an image ("[image: PATH]"); which seed
# does depends on the random weights, so up to 10 are tried.
seed=0
while [ $seed -lt 10 ]; do
  "$vargpt" chat --model "$fx" --prompt "$prompt" --sample --seed $seed --max-new-tokens 32 --size 256 \
    --image-out "$dir/chat.png" > "$dir/chat.txt" 2> /dev/null
  grep -q "^\[image: $dir/chat.png\]" "$dir/chat.txt" && break
  seed=$((seed + 1))
done
[ $seed -lt 10 ] || fail "no chat reply asked for an image with seeds 0..9"
expect_png "$dir/chat.png" 256x256

# (e) bad input: exit status 1, a message naming the problem, no output file.
expect_error() {  # expect_error PATTERN OUTPUT COMMAND...
  pattern=$1 out=$2; shift 2
  set +e; "$@" > "$dir/err.txt" 2>&1; rc=$?; set -e
  [ $rc -eq 1 ] || { cat "$dir/err.txt"; fail "expected exit status 1, got $rc: $*"; }
  grep -q "$pattern" "$dir/err.txt" || { cat "$dir/err.txt"; fail "missing '$pattern' in the error of: $*"; }
  [ ! -e "$out" ] || fail "$out was written by a failing command: $*"
}
expect_error "scale schedule" "$dir/bad.png" gen --prompt "$prompt" --size 300 --out "$dir/bad.png"
expect_error "\-\-size" "$dir/bad.png" gen --prompt "$prompt" --size 256x --out "$dir/bad.png"
head -c 300 "$src" > "$dir/corrupt.png"
expect_error "corrupt.png" "$dir/bad.png" "$vargpt" edit --model "$fx" --image "$dir/corrupt.png" --prompt "x" \
  --size 256 --out "$dir/bad.png"
printf 'garbage, not an image' > "$dir/garbage.png"
expect_error "garbage.png" "$dir/bad.png" "$vargpt" edit --model "$fx" --image "$dir/garbage.png" --prompt "x" \
  --size 256 --out "$dir/bad.png"
expect_error "nothere" "$dir/bad.png" gen --model "$dir/nothere" --prompt "x" --out "$dir/bad.png"
expect_error "vargpt chat" "$dir/bad.png" "$vargpt" generate --model "$2/qwen2_vl_tiny" --prompt "x" --size 256 \
  --out "$dir/bad.png"
# A VARGPT-typed config over a Qwen2-VL checkpoint (no generation tensors): generate refuses, and
# chat runs it as Qwen2-VL, token for token as the original directory.
mkdir -p "$dir/nogen"
cp "$2/chat_tiny/tokenizer.json" "$2/chat_tiny/preprocessor_config.json" "$2/chat_tiny/model.safetensors" "$dir/nogen/"
sed 's/"model_type": "qwen2_vl"/"model_type": "vargpt_qwen2_vl"/' "$2/chat_tiny/config.json" > "$dir/nogen/config.json"
grep -q vargpt_qwen2_vl "$dir/nogen/config.json" || fail "could not retype the chat_tiny config"
expect_error "no generation tensors.*vargpt chat" "$dir/bad.png" "$vargpt" generate --model "$dir/nogen" --prompt "x" \
  --out "$dir/bad.png"
"$vargpt" chat --model "$2/chat_tiny" --prompt "hello" --max-new-tokens 8 --print-ids 2> /dev/null | grep "^ids:" > "$dir/ids1.txt"
"$vargpt" chat --model "$dir/nogen" --prompt "hello" --max-new-tokens 8 --print-ids 2> /dev/null | grep "^ids:" > "$dir/ids2.txt"
cmp "$dir/ids1.txt" "$dir/ids2.txt" || fail "chat on the retyped checkpoint differs from Qwen2-VL"
# vargpt vae reads a VARGPT checkpoint directory: its vae_local.* tensors round-trip the fixture's
# own 256x256 image (without the prefix handling this is "not a BSQ-VAE checkpoint").
"$vargpt" vae --vae "$fx" --roundtrip "$fx/t2i.png" --out "$dir/vae_rt.png" > "$dir/vae_rt.txt" \
  || fail "vae --vae <VARGPT dir> failed: $(cat "$dir/vae_rt.txt")"
expect_png "$dir/vae_rt.png" 256x256
grep -q "PSNR" "$dir/vae_rt.txt" || fail "vae --roundtrip printed no PSNR"
# Positions: the prompt, the reply and the image's 521 tokens (the 256² schedule) share the LLM's
# max_position_embeddings. With it cut to 640 in a copy of the fixture, --max-text-tokens 100000 is
# clamped with a warning that names the limit, and a prompt that leaves no room is an error.
mkdir -p "$dir/short"
for f in "$fx"/*; do [ "$(basename "$f")" = config.json ] || ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$dir/short/"; done
sed 's/"max_position_embeddings": 4096/"max_position_embeddings": 640/' "$fx/config.json" > "$dir/short/config.json"
grep -q '"max_position_embeddings": 640' "$dir/short/config.json" || fail "could not cut max_position_embeddings"
"$vargpt" generate --model "$dir/short" --size 256 --prompt "$prompt" --max-text-tokens 100000 --out "$dir/clamp.png" \
  > /dev/null 2> "$dir/clamp.err" || { cat "$dir/clamp.err"; fail "generate with a clamped reply failed"; }
grep -q "warning: --max-text-tokens 100000 would go past max_position_embeddings 640" "$dir/clamp.err" ||
  { cat "$dir/clamp.err"; fail "no warning for --max-text-tokens past max_position_embeddings"; }
expect_png "$dir/clamp.png" 256x256
long_prompt=$(printf 'red circle %.0s' $(seq 1 40))
expect_error "leave no room for a reply within max_position_embeddings 640" "$dir/bad.png" \
  "$vargpt" generate --model "$dir/short" --size 256 --prompt "$long_prompt" --out "$dir/bad.png"
echo "vargpt cli: ok"
