#!/usr/bin/env python3
"""Hugging Face `tokenizers` baseline for bench/bench_tokenizer.cpp: the same corpus, the same
Qwen2 tokenizer.json, one thread (RAYON_NUM_THREADS=1), each document encoded on its own with
add_special_tokens=False. Prints MB/s for a cold pass (fresh tokenizer), warm passes, and decode.
    python3 bench/hf_tokenizer.py
"""
import os
import struct
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus():
    blob = open(os.path.join(ROOT, "tests/fixtures/tokenizer/corpus.bin"), "rb").read()
    assert blob[:8] == b"VTTOKFX1"
    pos = 8
    (n,) = struct.unpack_from("<I", blob, pos)
    pos += 4
    docs = []
    for _ in range(n):
        nb, ni = struct.unpack_from("<II", blob, pos)
        pos += 9
        docs.append(blob[pos:pos + nb].decode("utf-8"))
        pos += nb
        for _ in range(ni):
            while blob[pos] & 0x80:
                pos += 1
            pos += 1
    return docs


docs = corpus()
nbytes = sum(len(d.encode("utf-8")) for d in docs)
path = os.path.join(ROOT, "third_party/qwen2/tokenizer.json")


def mbps(seconds):
    return nbytes / seconds / 1e6


tok = Tokenizer.from_file(path)
t0 = time.perf_counter()
ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
cold = time.perf_counter() - t0
warm = []
for _ in range(3):
    t0 = time.perf_counter()
    for d in docs:
        tok.encode(d, add_special_tokens=False)
    warm.append(time.perf_counter() - t0)
t0 = time.perf_counter()
for i in ids:
    tok.decode(i, skip_special_tokens=False)
dec = time.perf_counter() - t0
print(f"corpus: {len(docs)} documents, {nbytes / 1e6:.2f} MB")
print(f"hf encode_cold {mbps(cold):8.2f} MB/s  ({cold * 1e3:.0f} ms)")
print(f"hf encode_warm {mbps(min(warm)):8.2f} MB/s  ({min(warm) * 1e3:.0f} ms)")
print(f"hf decode      {mbps(dec):8.2f} MB/s  ({dec * 1e3:.0f} ms)")
