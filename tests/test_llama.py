"""Meta's recipes (--format llama, llama-cot; --task mmlu_llama_multilingual): prompts, the
gen_prefix and the stop strings byte for byte as lm-eval 0.4.13 renders its llama3/instruct
tasks on made-up documents (tests/fixtures/lmeval_prompts.json), at 0 and k shots, plain and
under the chat template; the multilingual task's data read from a folder and a hub cache in
Meta's layout (its shots parsed from Meta's own prompts); fake-model runs through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import formats, prompts, tasks
from mmlu_bench.backends import chat_template as ct
from mmlu_bench.errors import ConfigError, DataError, UserError
from mmlu_bench.schema import Question, TaskData
from mmlu_bench.tasks import meta_evals
from mmlu_bench.tasks import mmlu_llama_multilingual as ml
from mmlu_bench.tasks.mmlu import MMLU
from mmlu_bench.tasks.mmlu_pro import UNITS

from .test_chat import FIXTURES, SMOLLM2_TOKENS
from .test_generative_chat import settings
from .test_mmlu_pro import write_jsonl

# lm-eval task -> (--task, --format, our unit)
LLAMA = {"mmlu_llama_anatomy": ("mmlu", "llama", "anatomy"),
         "mmlu_cot_llama_anatomy": ("mmlu", "llama-cot", "anatomy"),
         "mmlu_pro_llama_biology": ("mmlu_pro", "llama", "biology"),
         "mmlu_de_llama_anatomy": ("mmlu_llama_multilingual", "llama", "de.anatomy")}
CASES = [c for c in FIXTURES["cases"] if c["lmeval_task"] in LLAMA]
META_CONFIG = ml.CONFIG.format(lang="de")
DATA_FILE = "Llama-3.1-8B-Instruct-evals/Details_multilingual_mmlu_de_2024-07-19T00-00-00.parquet.gzip"


def write_meta(root: Path, rows: list[dict], config: str = META_CONFIG) -> Path:
    """Meta's evals dataset layout: a card whose `configs` name the split's parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(
        "---\nlicense: llama3.1\nconfigs:\n- config_name: other__details\n  data_files:\n"
        "  - split: latest\n    path:\n    - other/x.parquet\n"
        f"- config_name: {config}\n  data_files:\n  - split: latest\n    path:\n"
        f"    - >-\n      {DATA_FILE}\n---\n\n# made-up card\n", encoding="utf-8")
    (root / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / DATA_FILE, compression="gzip")
    return root


def case_requests(case: dict, renderer, tmp_path: Path):
    """Our requests for the case's made-up documents, in the fixture's order."""
    task_name, fmt_name, unit = LLAMA[case["lmeval_task"]]
    fmt = formats.get(fmt_name, task=task_name, **settings(case["options"]))
    if task_name == "mmlu":
        def rows(docs):
            return tuple(Question(d["subject"], i, d["question"], tuple(d["choices"]),
                                  d["answer"]) for i, d in enumerate(docs))
        task, asked = MMLU(), rows(case["test_docs"])
        data = TaskData({unit: asked}, {unit: rows(case["fewshot_docs"])}, "fixture")
    elif task_name == "mmlu_pro":
        write_jsonl(tmp_path / "test.jsonl", case["test_docs"])
        write_jsonl(tmp_path / "validation.jsonl", case["fewshot_docs"])
        task = tasks.get("mmlu_pro", recipe="llama")
        data = task.load(str(tmp_path), UNITS)
        asked = data.test[unit]
    else:  # the shots come from Meta's prompt in each row, not from the fixture's samples
        task = tasks.get(task_name, languages="de")
        data = task.load(str(write_meta(tmp_path / "meta", case["test_docs"])), (unit,))
        asked = data.test[unit]
    return fmt, fmt.requests(task, asked, data, case["num_fewshot"], renderer)


def test_the_fixtures_hold_every_recipe_plain_and_chat_at_0_and_k_shots():
    names = {c["case"] for c in CASES}
    for lmeval_task in ("mmlu_llama_anatomy", "mmlu_pro_llama_biology", "mmlu_de_llama_anatomy"):
        for k in (0, 2):
            assert {f"{lmeval_task}-{k}shot-plain",
                    f"{lmeval_task}-{k}shot-chat-multiturn"} <= names
    assert {"mmlu_cot_llama_anatomy-0shot-plain", "mmlu_cot_llama_anatomy-0shot-chat-multiturn",
            "mmlu_llama_anatomy-2shot-chat", "mmlu_llama_anatomy-2shot-chat-multiturn-system",
            "mmlu_llama_anatomy-2shot-plain-system", "mmlu_pro_llama_biology-2shot-chat"} <= names


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["case"])
def test_prompts_prefill_and_stops_equal_lm_evals(case, tmp_path):
    renderer = ct.template_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS, "SmolLM2")
    fmt, made = case_requests(case, renderer, tmp_path)
    assert len(made) == len(case["requests"]) > 0
    for got, want in zip(made, case["requests"], strict=True):
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        assert list(got.until) == want["gen_kwargs"]["until"]
        assert got.max_tokens == want["gen_kwargs"]["max_gen_toks"]
        if case["gen_prefix"]:  # the prefill is the context's end, chat or not
            assert got.context.endswith(case["gen_prefix"])
    assert getattr(fmt, "gen_prefix", None) == case["gen_prefix"]


@pytest.mark.parametrize("case", [c for c in CASES if c["options"]["apply_chat_template"]],
                         ids=lambda c: c["case"])
def test_the_jinja_fallback_continues_the_prefill_as_transformers_does(case, tmp_path):
    render = ct._jinja_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS)
    renderer = ct.ChatRenderer("t", render, render_prefill=lambda m: render(m, prefill=True))
    _, made = case_requests(case, renderer, tmp_path)
    assert [r.context for r in made] == [r["context"] for r in case["requests"]]


def test_a_server_is_sent_the_open_assistant_turn(tmp_path):
    case = next(c for c in CASES if c["case"] == "mmlu_llama_anatomy-2shot-chat-multiturn")
    _, made = case_requests(case, ct.server_renderer(), tmp_path)
    r = made[0]
    assert [m["role"] for m in r.messages] == ["user", "assistant"] * 3
    assert r.messages[1]["content"].startswith("The best answer is ")
    assert r.messages[-1] == {"role": "assistant", "content": "The best answer is"}
    single = next(c for c in CASES if c["case"] == "mmlu_llama_anatomy-2shot-chat")
    _, made = case_requests(single, ct.server_renderer(), tmp_path)
    # single-turn: every shot and the question in one user message, the prefill after it
    assert [m["role"] for m in made[0].messages] == ["user", "assistant"]


def test_a_renderer_that_cannot_continue_says_so(tmp_path):
    case = next(c for c in CASES if c["case"] == "mmlu_llama_anatomy-0shot-chat-multiturn")
    renderer = ct.ChatRenderer("t", lambda m: "")
    with pytest.raises(ConfigError, match="cannot continue an assistant turn"):
        case_requests(case, renderer, tmp_path)


def test_single_turn_keeps_the_prefill_as_its_own_message():
    turns = [prompts.Message("system", "S"), prompts.Message("user", "q1", " "),
             prompts.Message("assistant", "P a1", "\n\n"), prompts.Message("user", "q2", " "),
             prompts.Message("assistant", "P")]
    assert prompts.chat_dicts(prompts.single_turn(turns)) == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "q1 P a1\n\nq2"},
        {"role": "assistant", "content": "P"}]


# ---- the multilingual task's data: Meta's layout, a hub cache, the shots in its prompts

def meta_rows() -> list[dict]:
    return next(c for c in CASES if c["lmeval_task"] == "mmlu_de_llama_anatomy")["test_docs"]


def test_shots_are_read_from_metas_prompt(tmp_path):
    case = next(c for c in CASES if c["case"] == "mmlu_de_llama_anatomy-2shot-plain")
    task = tasks.get("mmlu_llama_multilingual", languages="de")
    data = task.load(str(write_meta(tmp_path, meta_rows())), ("de.anatomy", "de.virology"))
    shots = data.dev["de.anatomy"]
    assert [(s.question, s.choices, "ABCD"[s.gold]) for s in shots] == [
        (d["input_question"], tuple(d["input_choice_list"][x] for x in "ABCD"),
         d["input_correct_responses"][0]) for d in case["fewshot_docs"]]
    assert [q.index for q in data.test["de.anatomy"]] == [0, 1, 2]  # numbered per subject
    assert len(data.test["de.virology"]) == 1 and data.source.startswith("folder:")
    with pytest.raises(UserError, match="at most 5"):
        task.shots(data, data.test["de.anatomy"][0], 6)


def test_a_prompt_not_in_metas_shape_is_refused(tmp_path):
    rows = [dict(r) for r in meta_rows()]
    rows[0]["input_final_prompts"] = ["<|start_header_id|>user<|end_header_id|>\n\nHi"]
    task = tasks.get("mmlu_llama_multilingual", languages="de")
    with pytest.raises(DataError, match="not Meta's few-shot chat prompt"):
        task.load(str(write_meta(tmp_path, rows)), ("de.anatomy",))


def test_the_card_names_the_files_and_missing_pieces_are_explained(tmp_path):
    root = write_meta(tmp_path / "a", meta_rows())
    assert meta_evals.data_files(root / "README.md", META_CONFIG, "latest") == [DATA_FILE]
    with pytest.raises(DataError, match="no config"):
        meta_evals.data_files(root / "README.md", "nope", "latest")
    with pytest.raises(DataError, match="no README.md"):
        tasks.get("mmlu_llama_multilingual").load(str(tmp_path), ("de.anatomy",))
    (root / DATA_FILE).unlink()
    with pytest.raises(DataError, match="no such file"):
        tasks.get("mmlu_llama_multilingual").load(str(root), ("de.anatomy",))


def test_the_hub_dataset_from_a_local_cache_offline(tmp_path, monkeypatch):
    from .test_multilingual import fake_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = fake_hub(tmp_path, monkeypatch, ml.HUB_REPO, commit)
    write_meta(snapshot, meta_rows())
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text(commit)  # lm-eval reads main; so do we, naming the commit
    data = tasks.get("mmlu_llama_multilingual", languages="de").load(None, ("de.anatomy",))
    assert data.source == f"hub:{ml.HUB_REPO}@{commit}"
    assert len(data.test["de.anatomy"]) == 3 and len(data.dev["de.anatomy"]) == 5


def test_languages_and_formats_are_checked():
    assert tasks.get("mmlu_llama_multilingual").languages == tuple(ml.LANGUAGES)
    with pytest.raises(UserError, match="no such language"):
        tasks.get("mmlu_llama_multilingual", languages="en")
    from mmlu_bench.config import RunConfig

    with pytest.raises(ConfigError, match="--format llama"):
        RunConfig.from_spec("fake:m", task="mmlu_llama_multilingual")
    with pytest.raises(ConfigError, match="has none"):
        RunConfig.from_spec("fake:m", task="mmlu_redux", format="llama-cot")


def test_trees_have_lmeval_keys_aliases_and_versions():
    one = [(n.level, n.key, n.name, n.version)
           for n in tasks.get(ml.TOP).tree(["de.anatomy", "de.econometrics"])]
    assert one == [(0, "mmlu_de_llama", "mmlu_de_llama", "1"),
                   (1, "mmlu_de_llama_social_sciences", "social sciences", "1"),
                   (2, "mmlu_de_llama_econometrics", "econometrics", "1.0"),
                   (1, "mmlu_de_llama_stem", "stem", "1"),
                   (2, "mmlu_de_llama_anatomy", "anatomy", "1.0")]
    two = tasks.get(ml.TOP).tree(["de.anatomy", "fr.anatomy"])
    assert [(n.level, n.key) for n in two][:2] == [(0, ml.TOP), (1, "mmlu_de_llama")]


# ---- fake-model runs through the CLI: names, the prefill in the prompt identity, resume

def cli_run(out: Path, *argv: str) -> dict:
    from mmlu_bench import cli

    assert cli.main(["run", "--model", "fake:m", "--output", str(out), "--no-progress",
                     "--apply-chat-template", *argv]) == 0
    return json.loads((out / "results.json").read_text())


def test_fake_runs_of_each_recipe_name_and_resume(tmp_path, mmlu_dir, capsys):
    from mmlu_bench.records import read

    cot = cli_run(tmp_path / "cot", "--format", "llama-cot", "--data-dir", str(mmlu_dir),
                  "--subjects", "anatomy,virology", "--limit", "1")
    assert set(cot["results"]) >= {"mmlu_cot_llama", "mmlu_cot_llama_stem",
                                   "mmlu_cot_llama_anatomy"}
    header = read(tmp_path / "cot" / "records.jsonl")[0]
    assert "/llama-cot[mmlu_cot_llama]:greedy,max_tokens=1024,until=[]" in header.prompt_format
    case = next(c for c in CASES if c["case"] == "mmlu_pro_llama_biology-2shot-chat-multiturn")
    write_jsonl(tmp_path / "pro" / "test.jsonl", case["test_docs"])
    write_jsonl(tmp_path / "pro" / "validation.jsonl", case["fewshot_docs"])
    pro = cli_run(tmp_path / "p", "--task", "mmlu_pro", "--format", "llama", "--num-fewshot",
                  "2", "--data-dir", str(tmp_path / "pro"), "--subjects", "biology")
    assert pro["group_subtasks"]["mmlu_pro_llama"][0] == "mmlu_pro_llama_biology"
    assert pro["macro_average"]["unit"] == "categories"
    meta = write_meta(tmp_path / "meta", meta_rows())
    de = cli_run(tmp_path / "de", "--task", "mmlu_llama_multilingual", "--languages", "de",
                 "--format", "llama", "--num-fewshot", "5", "--data-dir", str(meta),
                 "--subjects", "anatomy,virology")
    assert de["versions"]["mmlu_de_llama"] == "1" and "mmlu_de_llama_anatomy" in de["results"]
    capsys.readouterr()
    cli_run(tmp_path / "de", "--task", "mmlu_llama_multilingual", "--languages", "de",
            "--format", "llama", "--num-fewshot", "5", "--data-dir", str(meta),
            "--subjects", "anatomy,virology")
    assert "Nothing left to score" in capsys.readouterr().out


@pytest.mark.slow
def test_hf_generation_from_units_prefix_caches_gives_the_same_text(gguf_path, mmlu_dir,
                                                                     tmp_path):
    """hf:'s generation with each unit's few-shot prefix run once and stacked into lm-eval's
    mixed batches (hf_generate._UnitCaches.stacked) writes the same text as with no prefix shared."""
    from mmlu_bench import backends
    from mmlu_bench.backends import hf_generate
    from mmlu_bench.backends.hf import _sdpa_gqa
    from mmlu_bench.config import RunConfig
    from mmlu_bench.runner import plan, with_requests

    config = RunConfig.from_spec(f"hf:{gguf_path}", format="llama", apply_chat_template=True,
                                 num_fewshot=2, data_dir=str(mmlu_dir), limit=4,
                                 subjects="anatomy,virology", batch_size="8", device="cpu",
                                 output=str(tmp_path), progress=False)
    backend = backends.create(config)
    try:
        p = with_requests(plan(config), backend)
        groups = [(p.requests[u], frozenset()) for u in p.subjects]
        (batch, _), = hf_generate.plan(backend, groups)  # 8 rows, two units of four
        assert {r.unit for r in batch} == {0, 1} and min(r.prefix for r in batch) > 100
        assert hf_generate._shared(backend, batch) < min(r.prefix for r in batch)
        texts = {}
        for sharing in (True, False):
            backend.prefix_sharing = sharing
            with _sdpa_gqa(backend.device):
                texts[sharing] = {g.qid: g.text for out in
                                  hf_generate.generate_groups(backend, groups) for g in out}
        assert texts[True] == texts[False] and len(texts[True]) == 8
    finally:
        backend.close()
