"""The typed run configuration. Rejects unknown or contradictory settings before any work."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .model_spec import model_slug, parse_model
from .errors import ConfigError

DTYPES = ("auto", "float32", "fp32", "float16", "fp16", "bfloat16", "bf16")


@dataclass(frozen=True, slots=True)
class RunConfig:
    model: str  # without the backend prefix
    backend: str = "hf"
    task: str = "mmlu"  # tasks.TASKS key
    languages: str | None = None  # multilingual tasks: comma-separated locales
    redux_subset: str | None = None  # mmlu_redux: ok (default) | all
    format: str = "plain"  # formats.FORMATS key: how the task is asked
    # lm-eval's --apply_chat_template, --fewshot_as_multiturn (None: on with a template, as
    # lm-eval's CLI), --system_instruction
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool | None = None
    system_instruction: str | None = None
    data_dir: str | None = None
    data_source: str | None = None  # without data_dir: bundled | hub (None: the task's default)
    subjects: str | None = None  # comma-separated subjects or categories; None = all 57
    num_fewshot: int = 0
    limit: int | None = None  # lm-eval's meaning: the first N test questions of each subject
    sample: int | None = None  # a stratified random sample of N test questions (sampling.py)
    seed: int = 0  # the sample's seed
    output: str | None = None
    batch_size: str = "auto"  # "auto" or a number of rows
    device: str = "auto"
    dtype: str = "auto"
    quantize: str | None = None  # 8bit | 4bit (hf on CUDA)
    prefix_sharing: bool = True
    # llama.cpp
    n_gpu_layers: int = 0
    threads: int | None = None
    ctx_size: int = 4096
    # vLLM (vllm:)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    vllm_args: tuple[str, ...] = ()  # KEY=VALUE engine arguments passed through
    # servers
    model_name: str | None = None
    api_key: str | None = None  # never written to records, results or logs
    concurrency: int = 4
    timeout: float = 120.0
    ollama_direct: bool = False  # ollama: score the pulled file in-process, not via the server
    # Ray (backends/ray_pool.py): N replicas of an in-process backend; the cluster to join
    # (None: RAY_ADDRESS, else a local one on 127.0.0.1). Not part of a run's identity.
    data_parallel: int | None = None
    ray_address: str | None = None
    progress: bool = True
    # the published model this run is a copy of (a GGUF, a renamed folder): mmlu-bench published
    published_model: str | None = None

    @classmethod
    def from_spec(cls, model_spec: str, **settings) -> RunConfig:
        """Build from '[backend:]model' and keyword settings; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        backend, model = parse_model(model_spec)
        if "vllm_args" in settings:  # a list from the command line
            settings["vllm_args"] = tuple(settings["vllm_args"] or ())
        return cls(model=model, backend=backend, **settings).checked()

    def task_spec(self):
        """The task this run asks, built with its options."""
        from . import tasks

        options = {"languages": self.languages} if self.languages else {}
        if self.redux_subset:
            options["redux_subset"] = self.redux_subset
        return tasks.get(self.task, recipe=self.format, **options)

    def format_spec(self):
        """The prompt format this run uses."""
        from . import formats

        settings: dict = {"system_instruction": self.system_instruction, "task": self.task}
        if not self.apply_chat_template:
            return formats.get(self.format, **settings)
        settings.update(apply_chat_template=True,
                        fewshot_as_multiturn=self.fewshot_as_multiturn is not False)
        return formats.get("chat" if self.format == "plain" else self.format, **settings)

    def checked(self) -> RunConfig:
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ConfigError("--fewshot-as-multiturn needs --apply-chat-template (few-shot "
                              "turns exist only in a chat); add it, or leave the flag out.")
        task = self.task_spec()  # an unknown task or option: before any work
        self._check_source(task)
        if task.formats and self.format not in task.formats:
            raise ConfigError(f"--task {self.task} is a recipe of its own: run it with --format "
                              f"{' or '.join(task.formats)}.")
        self.format_spec()
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit {self.limit}: give a positive number of questions per "
                              "subject, or leave it out for the full test set.")
        if self.sample is not None and self.limit is not None:
            raise ConfigError("--sample and --limit together: use --sample N for a random "
                              "estimate, or --limit N for lm-eval's first N per subject.")
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"--sample {self.sample}: give a positive number of questions.")
        if self.num_fewshot < 0:
            raise ConfigError(f"--num-fewshot {self.num_fewshot}: use 0 to 5.")
        if self.batch_size != "auto" and not (str(self.batch_size).isdigit()
                                              and int(self.batch_size) > 0):
            raise ConfigError(f"--batch-size {self.batch_size!r}: use a positive number or auto.")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r}: use one of {', '.join(DTYPES)}.")
        if self.quantize not in (None, "8bit", "4bit"):
            raise ConfigError(f"--quantize {self.quantize!r}: use 8bit or 4bit.")
        if self.quantize and self.backend != "hf":
            raise ConfigError("--quantize is for the hf: backend; GGUF and Ollama models are "
                              "already quantized.")
        self._check_vllm()
        if self.ollama_direct and self.backend != "ollama":
            raise ConfigError("--ollama-direct is for ollama:NAME models.")
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1.")
        self._check_ray()
        if self.backend == "openai" and not self.model_name:
            raise ConfigError("openai: needs --model-name, the model id the server serves "
                              "(see its /v1/models).")
        return self

    def _check_source(self, task) -> None:
        if self.data_source is None:
            return
        if self.data_dir is not None:
            raise ConfigError(f"--data-source {self.data_source} and --data-dir together: "
                              "--data-dir reads your own copy; give one of the two.")
        if self.data_source not in task.sources:
            raise ConfigError(f"--data-source {self.data_source}: --task {self.task} reads "
                              f"{' or '.join(task.sources)} (or a local copy with --data-dir).")

    def _check_ray(self) -> None:
        if self.ray_address and not self.data_parallel:
            raise ConfigError("--ray-address needs --data-parallel N (the replicas to run on "
                              "that cluster).")
        if self.data_parallel is None:
            return
        if self.data_parallel < 1:
            raise ConfigError(f"--data-parallel {self.data_parallel}: give a number of "
                              "replicas, 1 or more.")
        from .backends import spec
        from .backends.ray_cluster import RAY_INSTALL

        if not spec(self.backend).in_process:
            raise ConfigError(f"--data-parallel runs copies of an in-process backend; "
                              f"{self.backend}: talks to a server: raise --concurrency "
                              "instead (or run gguf: on Ollama's file).")
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(f"--data-parallel needs Ray: {RAY_INSTALL}")

    def _check_vllm(self) -> None:
        given = [flag for flag, value, default in (
            ("--tensor-parallel-size", self.tensor_parallel_size, 1),
            ("--gpu-memory-utilization", self.gpu_memory_utilization, None),
            ("--max-model-len", self.max_model_len, None),
            ("--vllm-arg", self.vllm_args, ())) if value != default]
        if given and self.backend != "vllm":
            raise ConfigError(f"{', '.join(given)}: for the vllm: backend (vLLM's engine); "
                              "leave them out for other backends.")
        if self.tensor_parallel_size < 1:
            raise ConfigError("--tensor-parallel-size must be at least 1 (GPUs per model).")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("--gpu-memory-utilization is a fraction of each GPU's memory, "
                              "above 0 and at most 1 (vLLM's default: 0.9).")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ConfigError("--max-model-len must be at least 2 tokens.")

    def output_dir(self) -> Path:
        """The run folder. The default is derived from the settings, so running the same
        command again finds the same folder and resumes."""
        if self.output:
            return Path(self.output).expanduser()
        name = self.model_name if self.backend == "openai" else self.model
        parts = [self.backend, model_slug(name or self.model), f"{self.num_fewshot}shot"]
        if self.task != "mmlu":
            parts.insert(0, self.task)
        if self.format != "plain":
            parts.append(self.format)
        if self.languages:
            parts.append(self.languages.replace(",", "+"))
        if self.redux_subset and self.redux_subset != "ok":
            parts.append(f"redux-{self.redux_subset}")
        if self.apply_chat_template:
            parts.append("chat" if self.fewshot_as_multiturn is not False else "chat-singleturn")
        if self.system_instruction:
            parts.append("sys" + hashlib.sha256(self.system_instruction.encode()).hexdigest()[:8])
        if self.limit:
            parts.append(f"limit{self.limit}")
        if self.sample:
            parts.append(f"sample{self.sample}" + (f"_seed{self.seed}" if self.seed else ""))
        return Path("runs") / "_".join(parts)

    def public(self) -> dict:
        """Settings for the run header: secrets removed."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.pop("api_key")
        out.pop("progress")
        return out

    def with_(self, **changes) -> RunConfig:
        return replace(self, **changes).checked()
