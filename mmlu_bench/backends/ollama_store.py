"""ollama:NAME without a server that gives logprobs: the GGUF `ollama pull NAME` stored, scored
in-process as gguf: scores a file (exact log-likelihoods, lm-eval's tokenization).

Ollama's store, as Ollama lays it out:
  $OLLAMA_MODELS (default ~/.ollama/models)
    manifests/<host>/<namespace>/<model>/<tag>  JSON: {"layers": [{"mediaType", "digest", ...}]}
    blobs/sha256-<hex>                           each layer, named by the sha256 of its bytes
A name is [host/][namespace/]model[:tag], by default registry.ollama.ai, library and latest.
The layer of type application/vnd.ollama.image.model is the GGUF; the template, params, system
and license layers beside it do not change a log-likelihood of a raw prompt (the server path
sends raw=true too), so they are only noted in info().
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelError
from .llamacpp import LlamaCppBackend

log = logging.getLogger(__name__)

LAYER = "application/vnd.ollama.image."
MODEL_LAYER = LAYER + "model"
# Layers that would change the numbers if left out: refused rather than silently dropped.
REFUSED_LAYERS = ("adapter",)
DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG = "registry.ollama.ai", "library", "latest"
# Where a Linux install running Ollama as a system service keeps its store.
SERVICE_STORE = "/usr/share/ollama/.ollama/models"
MAX_PARAMS_BYTES = 64 << 10  # a params layer is a small JSON; anything larger is only named


class StoreError(ModelError):
    """The pulled model cannot be found or read in Ollama's store."""


@dataclass(frozen=True, slots=True)
class StoreModel:
    """A model found in the store: its GGUF blob and the manifest's other layers."""

    name: str  # host/namespace/model:tag
    root: Path
    manifest: Path
    blob: Path  # the GGUF
    digest: str  # "sha256:<hex>", the manifest's digest of the GGUF
    layers: dict[str, str]  # the other layers: kind ("template", "params", ...) -> digest


def store_root() -> Path:
    value = os.environ.get("OLLAMA_MODELS")
    return Path(value).expanduser() if value else Path.home() / ".ollama" / "models"


def parse_name(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of an Ollama model name, with Ollama's defaults."""
    head, slash, last = name.rpartition("/")
    model, colon, tag = last.partition(":")  # a host's port has its colon before the last "/"
    parts = (head.split("/") if slash else []) + [model]
    if "@" in name or len(parts) > 3 or not all(parts) or (colon and not tag) or ":" in tag:
        raise ConfigError(f"ollama:{name}: not an Ollama model name; use "
                          "[host/][namespace/]model[:tag], e.g. ollama:smollm2:135m")
    defaults = [DEFAULT_HOST, DEFAULT_NAMESPACE][: 3 - len(parts)]
    host, namespace, model = [*defaults, *parts]
    return host, namespace, model, tag or DEFAULT_TAG


def resolve(name: str, root: Path | None = None) -> StoreModel:
    """The GGUF that `ollama pull name` stored under `root` (default: store_root())."""
    root = root or store_root()
    if not (root / "manifests").is_dir():
        hint = f" (a service install keeps it in {SERVICE_STORE})" if os.name == "posix" else ""
        raise StoreError(f"no Ollama model store at {root} (no manifests folder); set "
                         f"OLLAMA_MODELS to the folder Ollama keeps its models in{hint}")
    host, namespace, model, tag = parse_name(name)
    full = f"{host}/{namespace}/{model}:{tag}"
    manifest = root / "manifests" / host / namespace / model / tag
    if not manifest.is_file():  # Ollama writes names in lower case; a user may not
        manifest = root / "manifests" / host.lower() / namespace.lower() / model.lower() / tag
    if not manifest.is_file():
        raise StoreError(f"the Ollama store at {root} has no {full}; run `ollama pull {name}`")
    models, others = _layers(manifest)
    if not models:
        raise StoreError(f"{manifest}: the manifest of {full} lists no GGUF layer "
                         f"({MODEL_LAYER}); only a GGUF model can be scored")
    if len(models) > 1 or any(kind in others for kind in REFUSED_LAYERS):
        raise StoreError(f"{manifest}: {full} is more than one GGUF (an adapter or a split "
                         "model); the store path scores a single GGUF only, so run Ollama "
                         "0.12.11 or later and score it through the server")
    digest = models[0]
    blob = root / "blobs" / digest.replace(":", "-")
    if not blob.is_file():
        raise StoreError(f"{blob}: the GGUF of {full} is missing from the Ollama store; run "
                         f"`ollama pull {name}` again")
    return StoreModel(full, root, manifest, blob, digest, others)


def _layers(manifest: Path) -> tuple[list[str], dict[str, str]]:
    """(digests of the model layers, other layer kind -> digest) from a manifest file."""
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8"))["layers"]
        pairs = [(layer["mediaType"], layer["digest"]) for layer in layers]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{manifest}: not an Ollama manifest ({type(e).__name__}: {e}); run "
                         "`ollama pull` for this model again") from None
    for _, digest in pairs:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(digest)):
            raise StoreError(f"{manifest}: a layer digest {digest!r} is not sha256:<64 hex>")
    models = [digest for kind, digest in pairs if kind == MODEL_LAYER]
    others = {kind.removeprefix(LAYER): digest for kind, digest in pairs if kind != MODEL_LAYER}
    return models, others


def verify(found: StoreModel) -> None:
    """The blob's bytes hash to the manifest's digest (cached by identity.sha256: a
    multi-gigabyte model is read once, not at every start)."""
    from .identity import sha256

    actual = sha256(found.blob)
    if f"sha256:{actual}" != found.digest:
        raise StoreError(f"{found.blob}: its sha256 is {actual}, not the manifest's "
                         f"{found.digest}: the file is damaged or was replaced; run "
                         f"`ollama pull` for {found.name} again")


def params(found: StoreModel) -> dict | str | None:
    """The params layer (Ollama's default options for the model), for info(); None without."""
    digest = found.layers.get("params")
    blob = found.root / "blobs" / str(digest).replace(":", "-")
    if digest is None or not blob.is_file() or blob.stat().st_size > MAX_PARAMS_BYTES:
        return digest
    try:
        return json.loads(blob.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return digest


class OllamaStoreBackend(LlamaCppBackend):
    """ollama:NAME scored in-process from the store, with the gguf: backend's settings."""

    # Its resume keys are the server path's (the ollama: spec): a run begun through the server
    # does not resume from the store.
    exact = True  # the full log-softmax, as gguf: (the server path has only the top 20)

    def __init__(self, config, why: str = "--ollama-direct") -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"ollama:{config.model} without a server that gives logprobs "
                              f"({why}) runs the pulled file with llama-cpp-python: "
                              "pip install 'mmlu-bench[gguf]'")
        self.found = resolve(config.model)
        verify(self.found)
        self.why = why
        log.warning("ollama:%s scored in-process by llama.cpp from Ollama's store (%s): %s "
                    "(%s)", config.model, why, self.found.blob, self.found.digest)
        super().__init__(dataclasses.replace(config, model=str(self.found.blob)))

    def info(self) -> dict:
        f = self.found
        return {**super().info(), "ollama_path": "store", "ollama_model": f.name,
                "ollama_store": str(f.root), "ollama_blob": str(f.blob),
                "model_digest": f.digest, "ollama_why": self.why,
                # Not applied: the prompt is scored raw, as the server path sends it.
                "ollama_unused_layers": {k: v for k, v in f.layers.items() if k != "params"},
                "ollama_params": params(f)}
