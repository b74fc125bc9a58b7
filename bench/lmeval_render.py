"""Render reference prompts and filter results with lm-eval 0.4.13 itself, on synthetic documents.

Run with the lm-eval venv (never a dependency of mmlu-bench):
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 /tmp/lmeval-venv/bin/python bench/lmeval_render.py GGUF
writes tests/fixtures/lmeval_prompts.json and tests/fixtures/lmeval_filters.json.

`datasets.load_dataset` is replaced by a function returning made-up rows (bench/lmeval_synthetic.py)
in each hub dataset's columns; everything else is lm-eval's real code: TaskManager.load, the
evaluator's num_fewshot/seed settings, build_all_requests (fewshot_context, construct_requests),
HFLM.apply_chat_template with a transformers tokenizer loaded from the GGUF (as HFLM loads one),
and for filters the task's own filter ensembles and process_results (exact_match).
"""

import hashlib
import json
import pathlib
import sys
import types

import datasets
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lmeval_synthetic as syn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed (evaluator.simple_evaluate)
MMLU = ("cais/mmlu", "anatomy")
MMLU_PRO = ("TIGER-Lab/MMLU-Pro", None)
MMMLU = ("openai/MMMLU", "DE_DE")
LITE = ("CohereLabs/Global-MMLU-Lite", "en")
FULL = ("CohereForAI/Global-MMLU", "en")
REDUX = ("fxmarty/mmlu-redux-2.0-ok", "anatomy")
MMLU_NO_TRAIN = ("hails/mmlu_no_train", "anatomy")  # what lm-eval's llama3 tasks read
META_DE = ("meta-llama/Llama-3.1-8B-Instruct-evals",
           "Llama-3.1-8B-Instruct-evals__multilingual_mmlu_de__details")
# The de task's few-shot samples are translated MMLU questions written in lm-eval's YAML: the
# render replaces them with made-up ones (the same five the made-up rows' Meta prompts hold).
META_ROWS, META_SHOTS = syn.meta_multilingual("de")
SAMPLES = {"mmlu_de_llama_anatomy": META_SHOTS}

_DATA: dict = {}  # (path, name) -> {split: rows}; what the patched load_dataset serves


def _mmlu_split(rows):
    features = datasets.Features({
        "question": datasets.Value("string"), "subject": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")),
        "answer": datasets.ClassLabel(names=["A", "B", "C", "D"])})
    return datasets.Dataset.from_list(rows, features=features)


def fake_load_dataset(path=None, name=None, **kwargs):
    splits = _DATA[(path, name)]
    build = _mmlu_split if path in ("cais/mmlu", MMLU_NO_TRAIN[0]) else datasets.Dataset.from_list
    return datasets.DatasetDict({s: build(rows) for s, rows in splits.items()})


datasets.load_dataset = fake_load_dataset  # lm_eval.api.task calls datasets.load_dataset(...)


def standard_data() -> dict:
    return {
        MMLU: {"test": syn.mmlu_rows("test", 3), "validation": syn.mmlu_rows("val", 3),
               "dev": syn.mmlu_rows("dev", 5)},
        MMLU_PRO: syn.mmlu_pro_dataset(),
        MMMLU: {"test": syn.mmmlu_rows()},
        LITE: syn.global_lite_dataset(),
        FULL: syn.global_full_dataset(),
        REDUX: {"test": syn.redux_rows()},
        MMLU_NO_TRAIN: {"test": syn.mmlu_rows("test", 3), "dev": syn.mmlu_rows("dev", 5)},
        META_DE: {"latest": META_ROWS},
    }


def chat_renderer(gguf_path: str):
    """HFLM.apply_chat_template, bound to a stand-in holding what it reads (tokenizer, args)."""
    from transformers import AutoTokenizer

    p = pathlib.Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    import gguf

    field = gguf.GGUFReader(str(p)).fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode("utf-8")
    assert tok.chat_template == template, "tokenizer lost the GGUF chat template"
    holder = types.SimpleNamespace(tokenizer=tok, chat_template_args={})
    return (lambda history, add_generation_prompt=True:
            HFLM.apply_chat_template(holder, history, add_generation_prompt)), template


def load_task(manager: TaskManager, name: str, num_fewshot: int):
    """The evaluator's steps: load, set num_fewshot unless the YAML pins 0, seed the sampler."""
    task = manager.load([name])["tasks"][name]
    if task.get_config("num_fewshot") == 0 and num_fewshot:
        raise SystemExit(f"{name}: YAML pins num_fewshot 0; lm-eval ignores --num_fewshot")
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    return task


def row_index(rows: list[dict], doc: dict) -> int:
    """Index of the processed doc in the raw split (dict equality, as lm-eval's samplers)."""
    hits = [i for i, r in enumerate(rows) if {k: doc[k] for k in r} == r]
    assert len(hits) == 1, f"doc not found once in its split: {doc}"
    return hits[0]


def request_entry(task, instances, raw_rows) -> dict:
    first = instances[0]
    ctx = first.arguments[0]
    entry = {"doc_index": row_index(raw_rows, first.doc), "lmeval_doc_id": first.doc_id,
             "context": ctx, "sha256": hashlib.sha256(ctx.encode("utf-8")).hexdigest()}
    if first.request_type == "generate_until":
        entry["gen_kwargs"] = first.arguments[1]
    else:
        assert all(i.arguments[0] == ctx for i in instances), "contexts differ across choices"
        entry["continuations"] = [i.arguments[1] for i in instances]
    return entry


def render_case(manager, case: dict, chat) -> dict:
    task = load_task(manager, case["lmeval_task"], case["num_fewshot"])
    samples = SAMPLES.get(case["lmeval_task"])
    if samples is not None:  # made-up shots in place of the YAML's, then seeded as before
        from lm_eval.api import samplers

        task.sampler = samplers.get_sampler(task.fewshot_cfg.sampler)(samples, rnd=None)
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
    opts = case["options"]
    task.build_all_requests(
        system_instruction=opts["system_instruction"],
        apply_chat_template=opts["apply_chat_template"],
        fewshot_as_multiturn=opts["fewshot_as_multiturn"],
        chat_template=chat if opts["apply_chat_template"] else None)
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    key = (task.DATASET_PATH, task.DATASET_NAME)
    eval_split = task.config.test_split or task.config.validation_split
    fewshot_split = task.fewshot_cfg.split
    raw_rows = _DATA[key][eval_split]
    out = dict(case, dataset={"path": key[0], "name": key[1]}, eval_split=eval_split,
               fewshot_split=fewshot_split, fewshot_sampler=task.fewshot_cfg.sampler,
               description=task.config.description or "",
               target_delimiter=task.config.target_delimiter,
               fewshot_delimiter=task.config.fewshot_delimiter,
               test_docs=raw_rows, fewshot_docs=_DATA[key].get(fewshot_split, []) if
               fewshot_split else samples or [], gen_prefix=task.config.gen_prefix)
    out["requests"] = [request_entry(task, by_doc[d], raw_rows) for d in sorted(by_doc)]
    return out


def opts(chat=False, multiturn=False, system=None) -> dict:
    return {"apply_chat_template": chat, "fewshot_as_multiturn": multiturn,
            "system_instruction": system}


def case_list() -> list[dict]:
    plain = [("mmlu_anatomy", (0, 2)), ("leaderboard_mmlu_pro", (0, 2)),
             ("mmlu_pro_biology", (0, 2)), ("mmmlu_de_de_anatomy", (0, 2)),
             ("global_mmlu_en_stem", (0, 2)), ("global_mmlu_full_en_anatomy", (0, 2)),
             ("mmlu_anatomy_generative", (0, 2)), ("mmlu_flan_cot_zeroshot_anatomy", (0,)),
             ("mmlu_redux_anatomy_generative", (0,))]
    cases = [(name, k, opts()) for name, ks in plain for k in ks]
    cases += [("mmlu_anatomy", 0, opts(chat=True, multiturn=True)),
              ("mmlu_anatomy", 2, opts(chat=True, multiturn=True)),
              ("mmlu_anatomy", 2, opts(chat=True, multiturn=False)),
              ("mmlu_anatomy", 2, opts(chat=True, multiturn=True,
                                       system="You are a careful expert.")),
              ("mmlu_anatomy", 2, opts(chat=True, multiturn=False,
                                       system="You are a careful expert.")),
              ("mmlu_anatomy_generative", 2, opts(chat=True, multiturn=True)),
              ("mmlu_pro_biology", 2, opts(chat=True, multiturn=True)),
              # generate_until under the chat template (and a system instruction without one)
              ("mmlu_anatomy_generative", 2, opts(chat=True, multiturn=False)),
              ("mmlu_anatomy_generative", 2, opts(chat=True, multiturn=True,
                                                  system="You are a careful expert.")),
              ("mmlu_anatomy_generative", 2, opts(system="You are a careful expert.")),
              ("mmlu_flan_cot_zeroshot_anatomy", 0, opts(chat=True, multiturn=True,
                                                         system="You are a careful expert.")),
              ("mmlu_pro_biology", 2, opts(chat=True, multiturn=False,
                                           system="You are a careful expert."))]
    # Meta's recipes (llama3/instruct): a gen_prefix ("The best answer is") pre-filled
    for name, ks in (("mmlu_llama_anatomy", (0, 2)), ("mmlu_pro_llama_biology", (0, 2)),
                     ("mmlu_de_llama_anatomy", (0, 2)), ("mmlu_cot_llama_anatomy", (0,))):
        cases += [(name, k, o) for k in ks
                  for o in (opts(), opts(chat=True, multiturn=True))]
    cases += [("mmlu_llama_anatomy", 2, opts(chat=True, multiturn=False)),
              ("mmlu_llama_anatomy", 2, opts(chat=True, multiturn=True,
                                             system="You are a careful expert.")),
              ("mmlu_llama_anatomy", 2, opts(system="You are a careful expert.")),
              ("mmlu_pro_llama_biology", 2, opts(chat=True, multiturn=False))]
    out = []
    for name, k, o in cases:
        tag = "chat" if o["apply_chat_template"] else "plain"
        tag += "-multiturn" if o["fewshot_as_multiturn"] else ""
        tag += "-system" if o["system_instruction"] else ""
        out.append({"case": f"{name}-{k}shot-{tag}", "lmeval_task": name, "num_fewshot": k,
                    "options": o})
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: lmeval_render.py SmolLM2-135M-Instruct.Q4_1.gguf")
    _DATA.update(standard_data())
    chat, template = chat_renderer(argv[1])
    manager = TaskManager()
    cases = [render_case(manager, case, chat) for case in case_list()]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    payload = {"lm_eval_version": "0.4.13", "chat_template": template, "cases": cases}
    (FIXTURES / "lmeval_prompts.json").write_text(
        json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    import lmeval_render_filters

    lmeval_render_filters.write(manager, load_task, _DATA, FIXTURES / "lmeval_filters.json")
    print(f"wrote {len(cases)} prompt cases to {FIXTURES}")


if __name__ == "__main__":
    main(sys.argv)
