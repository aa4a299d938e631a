#!/usr/bin/env python3
"""gen_half_fixtures.py: PyTorch's float <-> bf16/f16 conversions as hashed fixtures for tests/test_half.cpp.

Inputs come from a splitmix64 stream that tests/test_half.cpp reimplements (keep the two in step):
a list of hand-picked special values, then N generated values mixing random bit patterns across all
exponents with values at, just below and just above the bf16/f16 rounding boundaries. torch (CPU)
converts them with contiguous `.to(dtype)`, the path tensor casts and checkpoint loading take.

Each fixture stores the first PREFIX inputs and outputs in full (so a failing test can name the first
differing index and its input) and a 64-bit FNV-1a hash of all inputs and all outputs (little-endian
bytes). The 16 -> 32/64-bit widenings are exhaustive (65536 inputs) and stored as hashes only.

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    python3 tools/gen_half_fixtures.py            # writes tests/fixtures/half_*.json
"""
import json
import os
import struct

import torch

M64 = (1 << 64) - 1
N_F32 = 1 << 20  # generated float inputs (plus the specials)
N_F64 = 1 << 18  # generated double inputs (plus the specials)
PREFIX = 4096
SEED_F32 = 0x5EED0F32
SEED_F64 = 0x5EED0F64


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


F32_SPECIALS = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,              # +-0, +-inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA00000,  # quiet / signalling NaNs
    0x7FFFFFFF, 0xFFFFFFFF, 0x7FBFFFFF, 0xFFE12345, 0x7F812345,
    0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x80800000,              # FLT_MAX, FLT_MIN
    0x007FFFFF, 0x00000001, 0x80000001, 0x00008000, 0x00018000,  # float subnormals
    0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F7EFFFF, 0x7F7E8000,  # bf16 overflow boundary
    0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x3F817FFF, 0x3F818001,  # bf16 ties 1+2^-8..
    0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0xC77FF000,  # 65504, f16 overflow boundary
    0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,              # f16 ties at 1+2^-11, 1+3*2^-11
    0x38800000, 0x387FE000, 0x387FF000, 0x387FC000,              # f16 min normal / max subnormal
    0x33800000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33400000,  # 2^-24, 2^-25 (tie to 0), ...
    0x33C00000, 0x34200000, 0xB3000000, 0xB3000001,
]
BF16_LOW = [0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF, 0x7FFE, 0x8002]
F16_LOW = [0x1000, 0x0FFF, 0x1001, 0x0000, 0x1FFF, 0x0FFE, 0x1002]
EDGE_BASES = [0x477FF000, 0x7F7F8000, 0x477FE000, 0x00008000,
              0x33000000, 0x38800000, 0x387FF000, 0x7F800000]


def f32_bits_of(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]


def gen_f32_input(r):
    """One float bit pattern from one splitmix64 word r (see the kinds in tests/test_half.cpp)."""
    kind = r & 7
    sign = (r >> 63) << 31
    if kind <= 1:  # any bit pattern
        return r >> 32
    if kind == 2:  # bf16 rounding boundary: random top 16 bits, low 16 at / near the tie
        sel = (r >> 8) & 7
        low = BF16_LOW[sel] if sel < 7 else (r >> 16) & 0xFFFF
        return ((r >> 48) << 16) | low
    if kind == 3:  # f16 rounding boundary in the f16 normal range and just around it
        exp = 100 + ((r >> 40) % 44)
        sel = (r >> 8) & 7
        low = F16_LOW[sel] if sel < 7 else (r >> 44) & 0x1FFF
        return sign | (exp << 23) | (((r >> 20) & 0x3FF) << 13) | low
    if kind == 4:  # f16 subnormal ties (k + 1/2) * 2^-24, and one float ulp either side
        k = (r >> 20) & 0x3FF
        delta = ((r >> 8) % 3) - 1
        return sign | ((f32_bits_of((2 * k + 1) * 2.0 ** -25) + delta) & 0x7FFFFFFF)
    if kind == 5:  # around overflow thresholds, min normal, smallest ties
        base = EDGE_BASES[(r >> 16) & 7]
        return sign | ((base + ((r >> 8) & 0xFF) - 128) & 0x7FFFFFFF)
    if kind == 6:  # float subnormals
        return sign | ((r >> 32) & 0x7FFFFF)
    return sign | 0x7F800000 | ((r >> 32) & 0x7FFFFF)  # NaNs with random payloads (and inf)


F64_SPECIALS = [
    0x0000000000000000, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000,
    0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000,
    0x7FFFFFFFFFFFFFFF, 0xFFF123456789ABCD, 0x7FEFFFFFFFFFFFFF, 0x0000000000000001,
    0x3FF0100000000000, 0x3FF0100000000001, 0x3FF00FFFFFFFFFFF,  # bf16 tie 1+2^-8 (+-1 ulp)
    0x3FF0020000000000, 0x3FF0020000000001,                      # f16 tie 1+2^-11 (+ 1 ulp)
    0x40EFFDFFFFFFFFFF, 0x40EFFE0000000000, 0x40EFFC0000000000,  # near 65520 and 65504
    0x3E60000000000000, 0x3E60000000000001,                      # 2^-25 and above
    0x47EFFFFFE0000000, 0x47EFFFFFDFFFFFFF, 0x47EFFFFFFFFFFFFF,  # near FLT_MAX / overflow
]
DBL_LOW29 = [0, 1, 0x1FFFFFFF, 0x10000000, 0x0FFFFFFF, 0x10000001]
DBL_EDGE_EXPS = [1149, 1150, 1151, 871, 872, 873, 874, 875, 897, 898, 899, 1038, 1039, 997, 998, 999]


def gen_f64_input(r, s):
    """One double bit pattern from two splitmix64 words r, s."""
    kind = r & 3
    sign = (r >> 63) << 63
    if kind == 0:  # any bit pattern
        return s
    if kind == 1:  # random mantissa, exponent within the float range and a little beyond
        return sign | ((873 + ((r >> 40) % 281)) << 52) | (s & ((1 << 52) - 1))
    if kind == 2:  # a finite float on a bf16/f16 tie, widened, then nudged below float precision
        fb = s >> 32
        if (fb >> 23) & 0xFF == 0xFF:
            fb &= ~(1 << 30)
        fb = (fb & ~0xFFFF) | 0x8000 if (r >> 8) & 1 else (fb & ~0x1FFF) | 0x1000
        d = struct.unpack('<f', struct.pack('<I', fb))[0]
        db = struct.unpack('<Q', struct.pack('<d', d))[0]
        sel = (r >> 16) % 7
        return db | (DBL_LOW29[sel] if sel < 6 else (s & 0x1FFFFFFF))
    return sign | (DBL_EDGE_EXPS[(r >> 8) & 15] << 52) | (s & ((1 << 52) - 1))


def fnv1a64(data: bytes):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def signed(v, bits):
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def as_unsigned_list(t, bits):
    mask = (1 << bits) - 1
    return [v & mask for v in t.tolist()]


def tensor_of_bits(bits, nbits):
    itype = {16: torch.int16, 32: torch.int32, 64: torch.int64}[nbits]
    ftype = {16: None, 32: torch.float32, 64: torch.float64}[nbits]
    t = torch.tensor([signed(b, nbits) for b in bits], dtype=itype)
    return t.view(ftype) if ftype is not None else t


def out_bits(t, nbits):
    itype = {16: torch.int16, 32: torch.int32, 64: torch.int64}[nbits]
    return as_unsigned_list(t.contiguous().view(itype), nbits)


def pack(values, nbits):
    fmt = {16: 'H', 32: 'I', 64: 'Q'}[nbits]
    return struct.pack('<%d%s' % (len(values), fmt), *values)


def entry(bits, nbits):
    return {"fnv1a64": "%016x" % fnv1a64(pack(bits, nbits)), "prefix": bits[:PREFIX]}


def to_bf16_bits(x):
    """torch's contiguous CPU cast to bf16. For f64 input torch rounds through f32, but its NaN
    bits depend on the element's position: 0xFFFF inside the 16-wide vectorised body, 0x7FC0 (the
    scalar c10::BFloat16 rule) in the tail. vt gives every NaN 0xFFFF, so the reference is taken
    through an explicit f32 tensor, whose cast is 0xFFFF everywhere, after checking that the two
    agree on every value except NaNs."""
    if x.dtype != torch.float64:
        return out_bits(x.to(torch.bfloat16), 16)
    direct = out_bits(x.to(torch.bfloat16), 16)
    via_f32 = out_bits(x.to(torch.float32).to(torch.bfloat16), 16)
    for i, (a, b) in enumerate(zip(direct, via_f32)):
        assert a == b or (b == 0xFFFF and a in (0xFFFF, 0x7FC0)), (i, hex(a), hex(b))
    return via_f32


def narrowing_fixture(seed, specials, n, gen, in_bits, words_per_value):
    rng = SplitMix64(seed)
    inputs = list(specials)
    for _ in range(n):
        words = [rng.next() for _ in range(words_per_value)]
        inputs.append(gen(*words))
    x = tensor_of_bits(inputs, in_bits)
    return {
        "torch_version": torch.__version__,
        "seed": seed, "num_specials": len(specials), "num_generated": n, "count": len(inputs),
        "input": entry(inputs, in_bits),
        "bf16": entry(to_bf16_bits(x), 16),
        "f16": entry(out_bits(x.to(torch.float16), 16), 16),
    }


def widening_fixture():
    every = tensor_of_bits(list(range(1 << 16)), 16)
    out = {"torch_version": torch.__version__}
    for name, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
        h = every.view(dtype)
        out[name + "_to_f32"] = "%016x" % fnv1a64(pack(out_bits(h.float(), 32), 32))
        out[name + "_to_f64"] = "%016x" % fnv1a64(pack(out_bits(h.double(), 64), 64))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "tests", "fixtures"))
    os.makedirs(root, exist_ok=True)
    fixtures = {
        "half_f32.json": narrowing_fixture(SEED_F32, F32_SPECIALS, N_F32, gen_f32_input, 32, 1),
        "half_f64.json": narrowing_fixture(SEED_F64, F64_SPECIALS, N_F64, gen_f64_input, 64, 2),
        "half_widen.json": widening_fixture(),
    }
    for name, data in fixtures.items():
        path = os.path.join(root, name)
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
