"""The demo GGUF as a transformers folder (fp32), for backends that load only such folders
(vllm:, vLLM's server). The weights are those hf: scores: the GGUF dequantized by transformers,
as lm-eval's hf model loads it, so the reference output in tests/fixtures applies."""

from __future__ import annotations

from pathlib import Path


def write_hf_folder(gguf: Path, out: Path) -> Path:
    """Write `gguf` dequantized to fp32 as a transformers folder `out` (~540 MB, ~20 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # transformers marks a model loaded from a GGUF as quantized (method "gguf") and refuses to
    # save it; its weights are plain fp32 tensors by now, so the marker goes.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
