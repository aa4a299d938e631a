#!/bin/sh
# vargpt shapes end to end: render a small dataset, then score its ground truth (must be 1.0). Then
# bad input (issue #19): a corrupt record in the JSON-array records file is named at its line; an
# empty records file and an --images folder that does not exist fail (non-zero exit) instead of
# scoring 0; no failed evaluation writes its --json report. Usage: shapes_cli.sh VARGPT
set -eu
vargpt=$1
dir=shapes_cli
rm -rf "$dir"
"$vargpt" shapes make --out "$dir" --size 64 --train 40 --test 20 --seed 3 --quiet
"$vargpt" shapes eval gen --data "$dir" --split test --json "$dir/gen.json" --quiet
grep -q '"overall": 1' "$dir/gen.json"
expect_error() {  # expect_error PATTERN COMMAND...
  pattern=$1; shift
  if "$@" > "$dir/out.txt" 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -q "$pattern" "$dir/out.txt" || { echo "missing '$pattern' in:"; cat "$dir/out.txt"; exit 1; }
}
expect_error "no_such_folder: no such directory" \
  "$vargpt" shapes eval gen --data "$dir" --images "$dir/no_such_folder" --json "$dir/bad1.json" --quiet
expect_error "no_such_folder: no such directory" \
  "$vargpt" shapes eval edit --data "$dir" --images "$dir/no_such_folder" --json "$dir/bad2.json" --quiet
cp "$dir/test/generation.json" "$dir/generation.good"
sed '4s/"geneval":/"geneval"/' "$dir/generation.good" > "$dir/test/generation.json"  # record 3, on line 4
expect_error "generation.json:4:[0-9]*: not valid JSON" \
  "$vargpt" shapes eval gen --data "$dir" --json "$dir/bad3.json" --quiet
: > "$dir/test/generation.json"
expect_error "generation.json: no records" "$vargpt" shapes eval gen --data "$dir" --json "$dir/bad4.json" --quiet
: > "$dir/test/editing.json"
expect_error "editing.json: no records" "$vargpt" shapes eval edit --data "$dir" --json "$dir/bad5.json" --quiet
for f in bad1.json bad2.json bad3.json bad4.json bad5.json; do
  if [ -e "$dir/$f" ]; then echo "a failed evaluation wrote $dir/$f"; exit 1; fi
done
echo "shapes cli: ok"
