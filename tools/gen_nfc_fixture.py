#!/usr/bin/env python3
"""Fixture for vt's NFC (models/tokenizer/unicode.cpp) against Hugging Face `tokenizers`, the
normaliser vt promises to equal (tokenizer.json's "normalizer": {"type": "NFC"}).

For every code point x (surrogates excepted: they cannot be in a str handed to Rust) three probes
are normalised by tokenizers.normalizers.NFC():
  0  x alone
  1  "a" x        (x composing with, or following, a base letter)
  2  "a" x U+0301 (x between a base and an acute: a mark of class < 230 lets the acute compose with
                  the base; a starter blocks it. This is where combining classes show.)
Only probes whose NFC differs from the probe itself are written, one a line:
  <probe> <x hex> <NFC output as hex code points>
so the test checks all 3 x 1,112,064 probes: the listed ones against their output, every other one
against itself. The first line states the tokenizers version and the count of lines per probe.

Writes tests/fixtures/tokenizer/nfc_hf.txt (~100 KB). Needs `pip install tokenizers`.
"""
import os

import tokenizers
from tokenizers import normalizers

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizer", "nfc_hf.txt")
PROBES = (lambda x: x, lambda x: "a" + x, lambda x: "a" + x + "\u0301")


def main():
    nfc = normalizers.NFC()
    lines, counts = [], [0, 0, 0]
    for k, probe in enumerate(PROBES):
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            s = probe(chr(cp))
            out = nfc.normalize_str(s)
            if out != s:
                lines.append(f"{k} {cp:X} " + " ".join(f"{ord(c):X}" for c in out))
                counts[k] += 1
    with open(OUT, "w") as f:
        f.write(f"# tokenizers {tokenizers.__version__} NFC; changed probes: {counts[0]} {counts[1]} {counts[2]}\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
