"""Loading a transformers model for the hf backend: a hub id, a local folder or a .gguf file."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from ..errors import ConfigError, ModelError


def load(config, device: str, dtype):
    """(model, tokenizer, identity) from a hub id, a local folder or a .gguf file."""
    from safetensors import SafetensorError  # a truncated or corrupt .safetensors file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(config.model).expanduser()
    kwargs: dict = {}
    if config.model.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"{path}: no such GGUF file; check the path.")
        from .identity import file_identity
        # transformers dequantizes GGUF weights to `dtype`, as lm-eval's hf model does.
        source, kwargs, identity = str(path.parent), {"gguf_file": path.name}, file_identity(path)
    elif path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a transformers model folder (no config.json).")
        from .identity import folder_identity

        source, identity = str(path), {"model_path": str(path.resolve()), **folder_identity(path)}
    elif config.model.startswith((".", "/", "~")) or config.model.count("/") > 1:
        raise ModelError(f"{config.model}: no such model file or folder; check the path.")
    else:
        from ..hub import download_model

        folder = download_model(config.model)
        source, identity = str(folder), {"hub_id": config.model, "revision": folder.name}
    quantization = _quantization(config, device)
    try:
        with _gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs,
                                                         **quantization)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{config.model}: could not load the model ({first[:200]}).") from None
    if not quantization:
        model.to(device)
    model.eval()
    return model, tokenizer, identity


def gguf_tokenizer(path: Path):
    """The transformers tokenizer built from a GGUF file's metadata, as the hf: backend (and
    lm-eval's hf model) loads it for a .gguf: the same vocabulary ids as llama.cpp's, but
    transformers' pre-tokenizer, which lm-eval's numbers follow."""
    from transformers import AutoTokenizer

    with _gguf_parsed_once():  # the config and the tokenizer each parse the file otherwise
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@contextlib.contextmanager
def _gguf_parsed_once():
    """Parse each GGUF file once while loading.

    transformers reads a .gguf file anew for the config, the tokenizer and the weights (three
    parses of a 49k-token vocabulary in Python: 17 of the 30 s it took to load SmolLM2-135M on
    2 cores). It imports GGUFReader and get_tensor_name_map from the gguf module at each call,
    so memoizing them there for the duration of the load shares one parse; the loaded
    weights and tokenizer are the same.
    """
    try:
        import gguf
    except ImportError:  # only .gguf files need it; transformers reports it missing for those
        yield
        return
    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def _quantization(config, device: str) -> dict:
    if not config.quantize:
        return {}
    if not device.startswith("cuda"):
        raise ConfigError(f"--quantize {config.quantize} needs CUDA (bitsandbytes). On {device}, "
                          "run a quantized GGUF with --model gguf:FILE, or through Ollama.")
    from transformers import BitsAndBytesConfig

    bits = {"8bit": {"load_in_8bit": True}, "4bit": {"load_in_4bit": True}}[config.quantize]
    return {"quantization_config": BitsAndBytesConfig(**bits), "device_map": device}
