#!/bin/sh
# vargpt vae end to end on the tiny fixture VAE (d = 16, patch 2): encode + decode equals the
# round trip byte for byte; a wrong schedule, a missing file and a bits file of another depth are
# refused with errors that name them. Usage: vae_cli.sh VARGPT FIXTURES_DIR
set -eu
vargpt=$1
vae=$2/bsq_vae.safetensors
dir=vae_cli
rm -rf "$dir" && mkdir -p "$dir"
"$vargpt" shapes make --out "$dir/sw" --size 64 --train 1 --test 0 --seed 5 --quiet > /dev/null
img=$dir/sw/train/images/000000.png
scales=1,2,4,8,16,32
"$vargpt" vae --vae "$vae" --encode "$img" --scales $scales --out "$dir/a.bits"
"$vargpt" vae --vae "$vae" --decode "$dir/a.bits" --scales $scales --out "$dir/dec.png"
"$vargpt" vae --vae "$vae" --roundtrip "$img" --scales $scales --out "$dir/rt.png" | tee "$dir/rt.txt"
cmp "$dir/dec.png" "$dir/rt.png"
grep -q "1365 tokens x 16 bits" "$dir/rt.txt"
grep -q "PSNR" "$dir/rt.txt"
expect_error() {  # expect_error PATTERN COMMAND...
  pattern=$1; shift
  if "$@" > "$dir/out.txt" 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -q "$pattern" "$dir/out.txt" || { echo "missing '$pattern' in:"; cat "$dir/out.txt"; exit 1; }
}
expect_error "are not the schedule expected here" "$vargpt" vae --vae "$vae" --decode "$dir/a.bits" --scales 1,2,4,8,32 --out "$dir/x.png"
expect_error "none.png: no such file" "$vargpt" vae --vae "$vae" --roundtrip "$dir/none.png" --scales $scales
expect_error "pass --scales" "$vargpt" vae --vae "$vae" --roundtrip "$img"
echo "vae cli: ok"
