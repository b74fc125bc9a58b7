#!/usr/bin/env python3
"""Write an F32 copy of a GGUF: every tensor dequantized, every metadata field kept.

`hf:` reads a quantized GGUF by dequantizing it to fp32, while llama.cpp (`gguf:`) multiplies
the quantized weights with 8-bit-quantized activations. The two then differ by ~0.1-0.2 nats
per letter, which flips near-tied letters. On this copy both backends compute with the same
fp32 weights, so what is left between them is the backends, not the arithmetic:

    python bench/gguf_f32.py model.Q4_1.gguf /tmp/model.F32.gguf
    python bench/chat_backends.py --hf-run RUN --gguf /tmp/model.F32.gguf --only gguf
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def convert(src: Path, dest: Path) -> None:
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"]
    writer = GGUFWriter(dest, bytes(arch.parts[arch.data[0]]).decode())
    for name, field in reader.fields.items():
        # The writer writes these itself; file_type would claim a quantization the copy lacks.
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            values = field.contents()
            writer.add_key_value(name, values, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)
    writer.add_file_type(0)  # ALL_F32
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)
        # GGUF lists dimensions fastest first; numpy wants them slowest first.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        writer.add_tensor(t.name, data.reshape(shape), raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    args = p.parse_args()
    convert(args.src, args.dest)
    print(f"wrote {args.dest} ({args.dest.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
