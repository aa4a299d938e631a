#!/bin/sh
# vargpt vae end to end on the tiny fixture VAE (d = 16, patch 2): encode + decode equals the
# round trip byte for byte, and the round trip's PSNR is the one measured for this VAE; a
# wrong schedule, a missing file and a bits file of another depth (d = 8, written here by hand) are
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
# The fixture VAE has random weights: it measured 11.86 dB on this image (a flat grey image scores
# 22.3 dB, an all-black one 5.1 dB), so the window [11.5, 12.2] dB catches a black, blank or otherwise
# changed reconstruction, not a poor one.
psnr=$(sed -n 's/.*PSNR \([0-9.]*\) dB.*/\1/p' "$dir/rt.txt")
[ -n "$psnr" ] || { echo "no PSNR in:"; cat "$dir/rt.txt"; exit 1; }
awk -v p="$psnr" 'BEGIN { exit !(p >= 11.5 && p <= 12.2) }' || { echo "PSNR $psnr dB is outside [11.5, 12.2] dB"; exit 1; }
expect_error() {  # expect_error PATTERN COMMAND...
  pattern=$1; shift
  if "$@" > "$dir/out.txt" 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -q "$pattern" "$dir/out.txt" || { echo "missing '$pattern' in:"; cat "$dir/out.txt"; exit 1; }
}
# A bits file of depth 8 on the same scales, by hand: safetensors (an 8-byte little-endian header
# length, the JSON header, then the data), every bit 0.
write_bits_d8() {  # write_bits_d8 PATH
  hdr='{"__metadata__":{"format":"vt.bsq_bits","version":"1","codebook_dim":"8","scales":"1x1,2x2,4x4,8x8,16x16,32x32"}'
  off=0 k=0
  for s in 1 2 4 8 16 32; do
    n=$((s * s * 8))
    hdr="$hdr,\"scale.$k\":{\"dtype\":\"U8\",\"shape\":[1,$s,$s,8],\"data_offsets\":[$off,$((off + n))]}"
    off=$((off + n)) k=$((k + 1))
  done
  hdr="$hdr}"
  len=${#hdr}
  printf "$(printf '\\%03o\\%03o\\%03o' $((len & 255)) $((len >> 8 & 255)) $((len >> 16 & 255)))\\000\\000\\000\\000\\000" > "$1"
  printf '%s' "$hdr" >> "$1"
  head -c $off /dev/zero >> "$1"
}
write_bits_d8 "$dir/d8.bits"
expect_error "d8.bits: bits have depth d = 8, the VAE expects d = 16" "$vargpt" vae --vae "$vae" --decode "$dir/d8.bits" --scales $scales --out "$dir/x.png"
[ ! -e "$dir/x.png" ] || { echo "a refused decode left $dir/x.png"; exit 1; }
expect_error "are not the schedule expected here" "$vargpt" vae --vae "$vae" --decode "$dir/a.bits" --scales 1,2,4,8,32 --out "$dir/x.png"
expect_error "none.png: no such file" "$vargpt" vae --vae "$vae" --roundtrip "$dir/none.png" --scales $scales
expect_error "pass --scales" "$vargpt" vae --vae "$vae" --roundtrip "$img"
# Issue #19. Every format the help promises, sniffed from the bytes (vt/io/image.h; JPEGs failed
# with "cannot decode PNG"): BMP and TGA hold the PNG's pixels, so their round trips are the same
# bytes. A truncated JPEG and schedules that are not coarse to fine are refused, and no failed
# command leaves an output or a temporary file.
pics=$2/images
"$vargpt" vae --vae "$vae" --roundtrip "$pics/picture.png" --scales $scales --out "$dir/pic_png.png" > /dev/null
for ext in bmp tga; do
  "$vargpt" vae --vae "$vae" --roundtrip "$pics/picture.$ext" --scales $scales --out "$dir/pic_$ext.png" > /dev/null
  cmp "$dir/pic_png.png" "$dir/pic_$ext.png"
done
"$vargpt" vae --vae "$vae" --roundtrip "$pics/picture.jpg" --scales $scales --out "$dir/pic_jpg.png" | tee "$dir/jpg.txt"
grep -q "picture.jpg: 64x64, 6 scales" "$dir/jpg.txt"
"$vargpt" vae --vae "$vae" --encode "$pics/picture.jpg" --scales $scales --out "$dir/jpg.bits" > /dev/null
head -c 900 "$pics/picture.jpg" > "$dir/cut.jpg"
expect_error "cut.jpg: truncated JPEG" "$vargpt" vae --vae "$vae" --encode "$dir/cut.jpg" --scales $scales --out "$dir/cut.bits"
# --scales strictly coarse to fine, naming the scale that breaks it.
expect_error "scale 3 (4x4) is not finer than scale 2 (8x8)" "$vargpt" vae --vae "$vae" --roundtrip "$img" --scales 1,2,8,4,16,32 --out "$dir/bad1.png"
expect_error "scale 2 (2x2) is not finer than scale 1 (2x2)" "$vargpt" vae --vae "$vae" --roundtrip "$img" --scales 1,2,2,4,8,16,32 --out "$dir/bad2.png"
expect_error "scale 2 (4x2) is not finer than scale 1 (2x4)" "$vargpt" vae --vae "$vae" --decode "$dir/a.bits" --scales 1,2x4,4x2,8 --out "$dir/bad3.png"
# No failed command above left an output or a temporary file.
for f in x.png cut.bits bad1.png bad2.png bad3.png; do
  if [ -e "$dir/$f" ]; then echo "a failed command left $dir/$f"; exit 1; fi
done
if ls "$dir" | grep -q "\.tmp\."; then echo "temporary files left:"; ls "$dir"; exit 1; fi
echo "vae cli: ok"
