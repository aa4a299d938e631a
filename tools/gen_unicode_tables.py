#!/usr/bin/env python3
"""Generate the tokenizer's Unicode tables from the Unicode Character Database, in two files:
  models/tokenizer/unicode_tables_classes.cpp  per-code-point properties and combining classes
  models/tokenizer/unicode_tables_nfc.cpp      canonical decompositions and compositions (NFC)

The normalisation data (combining classes, decompositions, compositions, NFC quick-check) is cut to
Unicode 9.0, the version Hugging Face `tokenizers` normalises at: its NFC comes from the Rust crate
unicode-normalization-alignments 0.1.12 (the only release of the "0.1" that tokenizers/Cargo.toml
asks for), whose tables.rs says UNICODE_VERSION = (9, 0, 0). Characters assigned later are, to it,
starters without decompositions (U+1DF8, U+07FD, U+1AC1 ... neither reorder nor block as marks), so
they are here too. The cut is exact: Unicode's stability policy freezes a character's combining class
and decomposition once assigned, and a composition only ever involves characters as old as its
result, so Unicode 9's data is Unicode 15's restricted to characters whose DerivedAge is <= 9.0.
The letter/number/space properties (the pre-tokenizer's regex classes) stay at Unicode 15.

Reads Debian's `unicode-data` package (/usr/share/unicode, Unicode 15.0 on bookworm):
  UnicodeData.txt            general category (L*, N*), canonical combining class, decompositions
  PropList.txt               White_Space (what Oniguruma's \\s matches with Unicode on)
  CompositionExclusions.txt  (read through DerivedNormalizationProps.txt's Full_Composition_Exclusion)
  DerivedNormalizationProps.txt  NFC_QC (No / Maybe), for the normaliser's fast path
  DerivedAge.txt             the version each character was assigned in (the cut to Unicode 9.0)

Per-code-point data is stored as two-stage tables (stage 1: cp >> 8 -> block, stage 2: 256-entry blocks,
deduplicated); decompositions are stored fully expanded; compositions as sorted (first << 21 | second) keys.
Usage: python3 tools/gen_unicode_tables.py [UCD_DIR [OUT_DIR]]   (OUT_DIR: models/tokenizer)
"""
import os
import sys

UCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "models", "tokenizer")
N_CP = 0x110000
NFC_UNICODE_VERSION = (9, 0)  # see the docstring: the version HF tokenizers' NFC uses
LETTER, NUMBER, SPACE, NFC_CHECK = 1, 2, 4, 8


def ranges_of(path, prop):
    out = []
    for line in open(f"{UCD}/{path}", encoding="utf-8"):
        line = line.split("#")[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(";")]
        if fields[1] != prop or (len(fields) > 2 and fields[2] not in ("N", "M")):
            continue
        lo, _, hi = fields[0].partition("..")
        out.append((int(lo, 16), int(hi or lo, 16), fields[2] if len(fields) > 2 else None))
    return out


props = bytearray(N_CP)
ccc = bytearray(N_CP)
decomp = {}
range_start = None
for line in open(f"{UCD}/UnicodeData.txt", encoding="utf-8"):
    f = line.rstrip("\n").split(";")
    cp, name, cat = int(f[0], 16), f[1], f[2]
    if name.endswith(", First>"):
        range_start = cp
        continue
    lo = range_start if name.endswith(", Last>") else cp
    range_start = None
    bits = (LETTER if cat[0] == "L" else 0) | (NUMBER if cat[0] == "N" else 0)
    for c in range(lo, cp + 1):
        props[c] |= bits
        ccc[c] = int(f[3])
    if f[5] and not f[5].startswith("<"):
        decomp[cp] = [int(x, 16) for x in f[5].split()]

# Characters assigned after NFC_UNICODE_VERSION: unassigned to the normaliser (class 0, no mapping).
newer = bytearray(N_CP)
for line in open(f"{UCD}/DerivedAge.txt", encoding="utf-8"):
    line = line.split("#")[0].strip()
    if not line:
        continue
    rng, age = (f.strip() for f in line.split(";"))
    if tuple(int(x) for x in age.split(".")) > NFC_UNICODE_VERSION:
        lo, _, hi = rng.partition("..")
        for c in range(int(lo, 16), int(hi or lo, 16) + 1):
            newer[c] = 1
for c in range(N_CP):
    if newer[c]:
        ccc[c] = 0
decomp = {c: d for c, d in decomp.items() if not newer[c]}

for lo, hi, _ in ranges_of("PropList.txt", "White_Space"):
    for c in range(lo, hi + 1):
        props[c] |= SPACE
# NFC_QC No/Maybe of Unicode 15, for characters of Unicode 9 or older: a superset of Unicode 9's own
# (decompositions, exclusions and compositions of old characters never go away), which is all the
# fast path needs: a flagged character only sends the text down the full algorithm.
for lo, hi, _ in ranges_of("DerivedNormalizationProps.txt", "NFC_QC"):
    for c in range(lo, hi + 1):
        if not newer[c]:
            props[c] |= NFC_CHECK
for c in range(N_CP):
    if ccc[c]:
        props[c] |= NFC_CHECK

exclusion = set()
for lo, hi, _ in ranges_of("DerivedNormalizationProps.txt", "Full_Composition_Exclusion"):
    exclusion.update(range(lo, hi + 1))


def expand(c):
    if c not in decomp:
        return [c]
    return [x for d in decomp[c] for x in expand(d)]


full = {c: expand(c) for c in decomp}
pairs = {(d[0], d[1]): c for c, d in decomp.items() if len(d) == 2 and c not in exclusion}


def two_stage(values, name):
    blocks, index = {}, []
    for b in range(N_CP // 256):
        blk = bytes(values[b * 256:(b + 1) * 256])
        index.append(blocks.setdefault(blk, len(blocks)))
    out = [f"const uint16_t {name}Index[{len(index)}] = {{"]
    for i in range(0, len(index), 48):
        out.append("  " + ",".join(str(x) for x in index[i:i + 48]) + ",")
    out.append("};")
    out.append(f"const uint8_t {name}Blocks[{len(blocks) * 256}] = {{")
    for blk in blocks:
        for i in range(0, 256, 128):
            out.append("  " + ",".join(str(x) for x in blk[i:i + 128]) + ",")
    out.append("};")
    return out


def header(what):
    return [
        f"// GENERATED by tools/gen_unicode_tables.py from the Unicode 15.0 Character Database: {what}.",
        "// Normalisation data (combining classes, decompositions, compositions) is cut to Unicode 9.0,",
        "// the version Hugging Face tokenizers' NFC uses (see the generator's docstring).",
        "// Do not edit; see unicode_tables.h for the layout.",
        '#include "tokenizer/unicode_tables.h"',
        "",
        "namespace vt::unicode::tables {",
        "",
    ]


footer = ["", "}  // namespace vt::unicode::tables", ""]

classes = header("letter/number/space/NFC-check properties and canonical combining classes")
classes += two_stage(props, "kProp") + [""] + two_stage(ccc, "kCcc") + footer

nfc = header("full canonical decompositions and the primary compositions")
pool, entries = [], []
for c in sorted(full):
    entries.append(f"{{0x{c:X},{len(pool)},{len(full[c])}}}")
    pool += full[c]
nfc.append(f"const Decomposition kDecompositions[{len(entries)}] = {{")
for i in range(0, len(entries), 12):
    nfc.append("  " + ",".join(entries[i:i + 12]) + ",")
nfc.append("};")
nfc.append(f"const uint32_t kDecompositionPool[{len(pool)}] = {{")
for i in range(0, len(pool), 16):
    nfc.append("  " + ",".join(f"0x{x:X}" for x in pool[i:i + 16]) + ",")
nfc.append("};")
comp = sorted(((a << 21) | b, c) for (a, b), c in pairs.items())
nfc.append(f"const Composition kCompositions[{len(comp)}] = {{")
for i in range(0, len(comp), 8):
    nfc.append("  " + ",".join(f"{{0x{k:X}ull,0x{v:X}}}" for k, v in comp[i:i + 8]) + ",")
nfc.append("};")
nfc.append(f"const size_t kNumDecompositions = {len(entries)};")
nfc.append(f"const size_t kNumCompositions = {len(comp)};")
nfc += footer

for name, text in (("unicode_tables_classes.cpp", classes), ("unicode_tables_nfc.cpp", nfc)):
    with open(os.path.join(OUT, name), "w") as f:
        f.write("\n".join(text))
