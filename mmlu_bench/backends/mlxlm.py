"""MLX backend (`mlx:`): mlx-lm runs the model in-process, on Apple silicon's GPU or a CPU.

Takes an MLX model folder (an mlx-community 4-bit or 8-bit conversion, or `mlx_lm.convert`'s
output), a plain Hugging Face folder of a model type mlx-lm knows, or a hub id of either.
It plans exactly as the hf: backend does (tokens.py: the same rows from the same Hugging Face
tokenizer, one forward pass per question, the subject's shared prefix computed once, batches
within a token budget), so the two differ only by float rounding.

mlx-lm's models take no attention mask and no position ids: a forward pass is
`model(ids, cache=...)`, and positions start at the cache's offset. So rows are RIGHT-padded
after the shared prefix: every row's tokens sit at their true positions, the causal mask keeps
the padding (which comes after them) from touching them, and each row is read at its own
last positions. Left padding would need a mask that hides padding in the middle of a row.

On Linux the `mlx[cpu]` wheel multiplies matrices with the reference BLAS it bundles, ~30x
slower than an optimized one; see _system_blas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..schema import ChoiceScores, ScoreRequest
from . import tokens as tk

log = logging.getLogger(__name__)

# Padded tokens per batch for --batch-size auto, and what one more forward pass costs in
# tokens when cutting batches (see hf.py). A GPU runs a pass in about the time of many tokens.
AUTO_TOKEN_BUDGET = {"cpu": 1024, "gpu": 8192}
BATCH_OVERHEAD = {"cpu": 48, "gpu": 1024}
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}


class MLXBackend:
    """Its spec: backends/__init__.py. As hf.py, batches are planned over all requests, so a
    resumed run computes each question in the same batch."""

    exact = True

    def __init__(self, config) -> None:
        self.blas = _system_blas()
        import mlx.core as mx

        self.mx = mx
        self.device = _pick_device(mx, config.device)
        self.batch_size = None if config.batch_size == "auto" else int(config.batch_size)
        self.token_budget = AUTO_TOKEN_BUDGET[self.device]
        self.batch_overhead = BATCH_OVERHEAD[self.device]
        self.model, self.tokenizer, settings, self.identity = _load(config)
        if config.dtype != "auto":
            self.model.set_dtype(getattr(mx, DTYPES[config.dtype]))
        self.max_length = tk.max_length(settings.get, self.tokenizer)
        self.encode = tk.lm_eval_encoder(self.tokenizer)
        self.quantization = _quantization(settings)
        # The prefix cache is reused by extending it per batch; that is done for plain KV caches
        # only. Models with other caches (sliding windows, state-space layers) run each row
        # whole, which is correct for any causal model.
        self.prefix_sharing = config.prefix_sharing and _plain_kv_cache(self.model)
        self.pad = self.tokenizer.pad_token_id or 0
        self.split = _split_head(mx, self.model)

    def info(self) -> dict:
        return {"device": f"mlx {self.device}", "dtype": _dtype(self.mx, self.model),
                "quantization": self.quantization, "max_length": self.max_length,
                "blas": self.blas,
                **self.identity}

    def close(self) -> None:
        self.model = None

    def score(self, requests: Sequence[ScoreRequest],
              skip: frozenset[str] = frozenset()) -> Iterator[list[ChoiceScores]]:
        return self.score_groups([(requests, skip)])

    def score_groups(self, groups: Iterable[tuple[Sequence[ScoreRequest], frozenset[str]]]
                     ) -> Iterator[list[ChoiceScores]]:
        """score() of several subjects in one stream, each planned when its turn comes."""
        return tk.score_stream(groups, self._plan, self._run)

    def _plan(self, requests: Sequence[ScoreRequest], skip: frozenset[str]) -> tk.Plan:
        return tk.plan_subject(requests, skip, self.encode, self.max_length,
                               sharing=self.prefix_sharing, batch_size=self.batch_size,
                               token_budget=self.token_budget, overhead=self.batch_overhead)

    def _run(self, plans: Iterator[tk.Plan]) -> Iterator[tuple[tk.Plan, list, list]]:
        for plan in plans:
            cache = self._prefix_cache(plan.prefix) if plan.prefix else None
            for batch in plan.todo:
                yield plan, batch, self._forward(batch, len(plan.prefix), cache)

    def _prefix_cache(self, prefix: tuple[int, ...]) -> list:
        """Per layer, the (keys, values) of the shared prefix, batch size 1."""
        from mlx_lm.models.cache import make_prompt_cache

        cache = make_prompt_cache(self.model)
        self.model(self.mx.array([prefix]), cache=cache)
        # A KVCache grows in steps of 256 positions: its arrays hold zeros past `offset`.
        state = [(c.keys[..., :c.offset, :], c.values[..., :c.offset, :]) for c in cache]
        self.mx.eval(state)
        return state

    def _forward(self, batch: list[tk.Row], shared: int, prefix) -> list:
        """Log-softmax rows for each row's last k positions (k = longest continuation)."""
        mx = self.mx
        suffixes = [r.tokens[shared:] for r in batch]
        width = max(len(s) for s in suffixes)
        keep = max(len(t) for r in batch for _, t in r.reads)
        # Right padding: see the module docstring. The padding id is never read.
        ids = mx.array([list(s) + [self.pad] * (width - len(s)) for s in suffixes])
        cache = _extend(prefix, len(batch)) if prefix is not None else None
        # Row i's last `keep` positions end at its own length; a row shorter than `keep`
        # reads only its own last positions (tokens.Collector reads the last n).
        where = mx.array([[max(len(s) - keep + j, 0) for j in range(keep)] for s in suffixes])
        if self.split:  # the vocabulary projection only where logits are read
            body, head = self.split
            picked = head(mx.take_along_axis(body(ids, cache=cache), where[:, :, None], axis=1))
        else:
            picked = mx.take_along_axis(self.model(ids, cache=cache), where[:, :, None], axis=1)
        picked = picked.astype(mx.float32)
        logprobs = picked - mx.logsumexp(picked, axis=-1, keepdims=True)
        import numpy as np

        out = np.array(logprobs)
        return [out[i] for i in range(len(batch))]


def _extend(prefix: list, batch_size: int) -> list:
    """A batch's cache over the shared prefix: per layer, a cache that starts as the prefix's
    keys and values broadcast along the batch (not copied) and concatenates the batch's own.

    mlx arrays are values: the pass builds new arrays, and the prefix's are only read.
    """
    import mlx.core as mx
    from mlx_lm.models.cache import ConcatenateKVCache

    out = []
    for keys, values in prefix:
        c = ConcatenateKVCache()
        c.state = (mx.broadcast_to(keys, (batch_size, *keys.shape[1:])),
                   mx.broadcast_to(values, (batch_size, *values.shape[1:])))
        out.append(c)
    return out


def _system_blas() -> str:
    """Have mlx's Linux CPU wheel multiply matrices with the system's OpenBLAS, if any.

    The wheel links the netlib reference BLAS (mlx_cpu.libs/libblas-*.so): a 135M model ran
    ~6 tokens/s on one core, against ~150 with OpenBLAS. A library loaded RTLD_GLOBAL before
    libmlx is searched first for libmlx's BLAS symbols (sgemm_ ...), so loading OpenBLAS
    before the first `import mlx.core` is enough; the results differ only by rounding. Once
    mlx is imported the choice is made; Macs use Accelerate and need nothing.
    """
    if sys.platform != "linux":
        return "platform"
    if "mlx.core" in sys.modules:
        return "as loaded"
    name = ctypes.util.find_library("openblas")
    if name:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return name
        except OSError:
            pass
    log.warning("mlx: no system OpenBLAS found; the mlx[cpu] wheel's reference BLAS is ~30x "
                "slower (apt install libopenblas0, or LD_PRELOAD an optimized BLAS).")
    return "bundled reference"


def _split_head(mx, model):
    """(body, head) with model(ids) == head(body(ids)), or None.

    mlx-lm's models compute logits at every position (no logits_to_keep); the vocabulary
    projection is a fifth of a 135M model's work per token. Most models are `model.model`
    then `lm_head` (or the tied embedding); one small pass checks that this model is, since
    some scale or cap the logits after the projection.
    """
    body, args = getattr(model, "model", None), getattr(model, "args", None)
    head = getattr(model, "lm_head", None)
    if head is None and getattr(args, "tie_word_embeddings", False):
        head = getattr(getattr(body, "embed_tokens", None), "as_linear", None)
    if body is None or head is None:
        return None
    ids = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    try:
        same = mx.allclose(head(body(ids, cache=None)), model(ids), rtol=1e-4, atol=1e-4)
        return (body, head) if same.item() else None
    except (TypeError, ValueError, AttributeError):
        return None


def _plain_kv_cache(model) -> bool:
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    return all(type(c) is KVCache for c in make_prompt_cache(model))


def _pick_device(mx, requested: str) -> str:
    """'cpu' or 'gpu', made mlx's default device. auto: the GPU where mlx has one (Metal on a
    Mac, or a CUDA build), else the CPU."""
    kind = requested.split(":")[0]
    if kind not in ("auto", "cpu", "gpu", "mps", "cuda"):
        raise ConfigError(f"--device {requested!r}: the mlx: backend runs on auto, cpu or gpu.")
    if kind == "auto":
        kind = "gpu" if mx.is_available(mx.gpu) else "cpu"
    elif kind != "cpu":
        if not mx.is_available(mx.gpu):
            raise ConfigError(f"--device {requested}: this mlx has no GPU (on Linux, "
                              "`pip install mlx[cpu]` is CPU only); use --device cpu.")
        kind = "gpu"
    mx.set_default_device(mx.gpu if kind == "gpu" else mx.cpu)
    return kind


def _load(config):
    """(model, tokenizer, config.json settings, identity) from a folder or a hub id."""
    from mlx_lm import load

    from .identity import folder_identity

    path = Path(config.model).expanduser()
    if config.model.lower().endswith(".gguf"):
        raise ModelError(f"{config.model}: mlx: takes an MLX or Hugging Face model folder; run "
                         "a .gguf file with gguf: or hf:.")
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json).")
        folder = path
        identity = {"model_path": str(path.resolve()), **folder_identity(path)}
    elif config.model.startswith((".", "/", "~")) or config.model.count("/") > 1:
        raise ModelError(f"{config.model}: no such model folder; check the path.")
    else:
        from ..hub import download_model

        folder = download_model(config.model)
        identity = {"hub_id": config.model, "revision": folder.name}
    try:
        overrides = _rope_settings(json.loads((folder / "config.json").read_text()))
        model, tokenizer, settings = load(str(folder), model_config=overrides,
                                          return_config=True)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{config.model}: mlx-lm could not load the model ({first[:200]})."
                         ) from None
    return model, tokenizer, settings, identity


def _rope_settings(settings: dict) -> dict:
    """rope_theta (and rope_scaling) at the top level, where mlx-lm's models read them.

    transformers 5 saves them inside `rope_parameters`; mlx-lm 0.32's llama (and others)
    read only the top-level keys and silently fall back to theta 10000: SmolLM2 (theta 1e5)
    then gave log-likelihoods off by up to 5 nats. Folders saved by transformers 4, as most
    on the hub are, already have the top-level keys.
    """
    rope = settings.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope or "rope_theta" in settings:
        return {}
    out = {"rope_theta": rope["rope_theta"]}
    if rope.get("rope_type", "default") != "default" and "rope_scaling" not in settings:
        out["rope_scaling"] = {**rope, "type": rope["rope_type"]}
    return out


def _quantization(settings: dict) -> dict | None:
    """bits, group size and mode from config.json's `quantization` (None: not quantized)."""
    q = settings.get("quantization") or settings.get("quantization_config")
    if not isinstance(q, dict):
        return None
    # Mixed conversions add per-layer entries (dicts) beside the defaults; keep the defaults.
    return {k: v for k, v in q.items() if not isinstance(v, dict)}


def _dtype(mx, model) -> str:
    """The floating-point dtype(s) of the weights (quantized layers: of their scales)."""
    from mlx.utils import tree_flatten

    kinds = {str(v.dtype).removeprefix("mlx.core.") for _, v in tree_flatten(model.parameters())
             if mx.issubdtype(v.dtype, mx.floating)}
    return ",".join(sorted(kinds)) or "none"

