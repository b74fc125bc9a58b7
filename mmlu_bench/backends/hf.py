"""Hugging Face transformers backend (`hf:`): a hub id, a local folder, or a .gguf file.

Speed without changing a number:
- one forward pass per question when every continuation is one token (lm-eval's one-token
  continuation case), reading the four letters at the answer position;
- logits only at the last position (`logits_to_keep`), not over the whole sequence;
- a subject's shared token prefix (description + few-shot examples) is run once and its KV cache
  reused by every batch of that subject;
- length-sorted batches within a token budget, cut where they pad least (tokens.batches).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..schema import ChoiceScores, ScoreRequest
from . import tokens as tk

log = logging.getLogger(__name__)

# Rows sharing fewer tokens than this are run without a prefix cache (not worth the copy).
MIN_SHARED_PREFIX = 32
# Padded tokens per batch for --batch-size auto. On CPU small batches are fastest (a 135M model
# ran ~470 tok/s at batch 4 and slower at 32); accelerators like large ones.
AUTO_TOKEN_BUDGET = {"cpu": 1024, "mps": 8192, "cuda": 32768}
# What one more forward pass costs beyond its tokens, in tokens, for cutting batches where they
# pad least. On CPU a 4-token pass of a 135M model took 95 ms (the weights are read from memory
# each pass), about 48 tokens' worth. A GPU runs a pass in about the time of thousands of
# tokens, so there padding is cheap and batches stay large (not measured here: no GPU).
BATCH_OVERHEAD = {"cpu": 48, "mps": 1024, "cuda": 4096}


class HFBackend:
    name = "hf"
    exact = True
    # score(requests, skip=qids) plans over all requests and runs only batches with a question
    # not in skip: a resumed run computes each question in the same batch, bit for bit.
    accepts_skip = True

    def __init__(self, config) -> None:
        import torch

        self.torch = torch
        self.device = _pick_device(config.device)
        self.dtype = _pick_dtype(config.dtype, self.device)
        self.batch_size = None if config.batch_size == "auto" else int(config.batch_size)
        kind = self.device.split(":")[0]
        self.token_budget = AUTO_TOKEN_BUDGET.get(kind, 4096)
        self.batch_overhead = BATCH_OVERHEAD.get(kind, 1024)
        self.prefix_sharing = config.prefix_sharing
        self.model, self.tokenizer, self.identity = _load(config, self.device, self.dtype)
        self.max_length = _max_length(self.model, self.tokenizer)
        # transformers 5.2x renamed the forward's `past_key_values` to `cache` (the old name
        # warns, then goes away); older versions know only the old name.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        bos = self.tokenizer.bos_token
        self._bos_text = bos if isinstance(bos, str) and bos else None

    def info(self) -> dict:
        return {"device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                "max_length": self.max_length, **self.identity}

    def close(self) -> None:
        self.model = None

    def encode(self, text: str) -> list[int]:
        # lm-eval 0.4.13 (add_bos_token unset) encodes with the tokenizer's own default for
        # special tokens: Llama-style tokenizers prepend BOS, GPT-2-style ones add nothing.
        # A text that already starts with the BOS string gets no second one.
        if self._bos_text and text.startswith(self._bos_text):
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(text)

    def score(self, requests: Sequence[ScoreRequest],
              skip: frozenset[str] = frozenset()) -> Iterator[list[ChoiceScores]]:
        rows = [row for r in requests for row in tk.plan_rows(r, self.encode, self.max_length)]
        shared = tk.common_prefix(rows) if self.prefix_sharing else 0
        if shared < MIN_SHARED_PREFIX:
            shared = 0
        cache = self._prefix_cache(rows[0].tokens[:shared]) if shared else None
        collector = tk.Collector(rows)
        for batch in tk.batches(rows, shared, self.batch_size, self.token_budget,
                                self.batch_overhead):
            if all(row.qid in skip for row in batch):
                continue
            done = []
            for row, logprobs in zip(batch, self._forward(batch, shared, cache), strict=True):
                scores = collector.add(row, logprobs)
                if scores is not None and row.qid not in skip:
                    done.append(scores)
            if done:
                yield done
        unfinished = set(collector.pending) - skip
        assert not unfinished, f"unfinished questions: {sorted(unfinished)[:3]}"

    def _prefix_cache(self, prefix: tuple[int, ...]):
        torch = self.torch
        ids = torch.tensor([prefix], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def _forward(self, batch: list[tk.Row], shared: int, cache) -> list:
        """Log-softmax rows for the last k positions of each row (k = longest continuation).

        Rows are LEFT-padded so that every row's answer position is the last one and
        `logits_to_keep` can skip the vocabulary projection everywhere else; position ids are
        given explicitly so padding does not shift them.
        """
        torch = self.torch
        suffixes = [r.tokens[shared:] for r in batch]
        width = max(len(s) for s in suffixes)
        keep = max(len(t) for r in batch for _, t in r.reads)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in suffixes])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
        kwargs = {}
        if cache is not None:
            kwargs[self._cache_arg] = _expand(cache, len(batch))
            mask = torch.cat([torch.ones(len(batch), shared, dtype=mask.dtype), mask], dim=1)
        with torch.inference_mode(), _sdpa_gqa(self.device):
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=positions.to(self.device), use_cache=cache is not None,
                             logits_to_keep=keep, **kwargs)
            logprobs = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        return [logprobs[i] for i in range(len(batch))]


@contextlib.contextmanager
def _sdpa_gqa(device: str):
    """Let SDPA attend grouped KV heads itself on CPU.

    With an attention mask on CPU, transformers copies the KV heads up to the query heads (3 to
    9 for SmolLM2: the whole prefix cache, per layer, per pass) before SDPA, unless this
    variable, read at each call, says otherwise. SDPA's own GQA gave bit-identical
    log-likelihoods on the 570 5-shot questions, 3% faster and 230 MB less peak memory. Not on
    CUDA: there, with a mask, it falls back to the slow math kernel.
    """
    name = "TRANSFORMERS_SDPA_FORCE_GQA"
    if device != "cpu" or name in os.environ:
        yield
        return
    os.environ[name] = "1"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _expand(cache, batch_size: int):
    """A private copy of the prefix cache for one batch: the forward pass appends to it."""
    mine = copy.deepcopy(cache)
    if batch_size > 1:
        mine.batch_repeat_interleave(batch_size)
    return mine


def _pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu.")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("--device mps: Metal is not available; use --device cpu.")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(requested: str, device: str):
    import torch

    if requested != "auto":
        names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                 "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if requested not in names:
            raise ConfigError(f"--dtype {requested!r}: use auto, float32, float16 or bfloat16.")
        return names[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 matmuls ran ~7x slower than fp32 on an AVX2 CPU; fp16 is Metal's fast path.
    return torch.float16 if device == "mps" else torch.float32


def _load(config, device: str, dtype):
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


def _max_length(model, tokenizer) -> int:
    """lm-eval's rule: the model config's context size, else the tokenizer's, else 2048."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**9 else 2048
