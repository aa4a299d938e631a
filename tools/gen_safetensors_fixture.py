#!/usr/bin/env python3
"""gen_safetensors_fixture.py: writes the reference safetensors file that tests/test_safetensors.cpp reads.

The file is written by the real Python `safetensors` library, so the C++ reader is checked against
upstream's writer (which orders tensors by descending dtype size, then by name, unlike vt's writer).
Beside it goes a JSON description: per tensor its safetensors dtype, shape and the exact bytes as
hex, plus the file's __metadata__. bf16 comes from ml_dtypes, the type numpy-side libraries use.

    pip install safetensors numpy ml_dtypes
    python3 tools/gen_safetensors_fixture.py  # writes tests/fixtures/safetensors_reference.{safetensors,json}

The outputs are committed; the C++ test does not need Python.
"""
import json
import os

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")

ST_NAMES = {"float32": "F32", "float64": "F64", "bfloat16": "BF16", "float16": "F16",
            "int32": "I32", "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def main():
    tensors = {
        "model.f32_matrix": np.array([[1.0, -2.5, 3.25], [0.0, 1e-8, -7e30]], dtype=np.float32),
        "model.f64_vector": np.array([np.pi, -np.e, 1e300, -0.0], dtype=np.float64),
        "model.bf16_weight": np.array([[1.0, -0.5], [3.140625, 65280.0], [-1e-3, 0.0]],
                                      dtype=ml_dtypes.bfloat16),
        "model.f16_half": np.array([[0.5, -65504.0], [6.1e-5, 1.0]], dtype=np.float16),
        "ids.i32": np.array([0, 1, -1, 2147483647, -2147483648], dtype=np.int32),
        "ids.i64": np.array([9007199254740993, -42], dtype=np.int64),
        "bytes.u8": np.arange(250, 257, dtype=np.int64).astype(np.uint8),  # 7 bytes, wraps
        "mask.bool": np.array([True, False, True]),
        "scalar": np.array(2.75, dtype=np.float32),  # 0-d
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    metadata = {"format": "np", "producer": "tools/gen_safetensors_fixture.py", "note": "utf-8 ✓"}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "safetensors_reference.safetensors")
    save_file(tensors, path, metadata=metadata)

    desc = {"metadata": metadata, "tensors": {}}
    for name, t in tensors.items():
        desc["tensors"][name] = {
            "dtype": ST_NAMES[t.dtype.name],
            "shape": list(t.shape),
            "hex": np.ascontiguousarray(t).astype(t.dtype.newbyteorder("<")).tobytes().hex(),
        }
    with open(os.path.join(OUT, "safetensors_reference.json"), "w") as f:
        json.dump(desc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
