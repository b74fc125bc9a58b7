"""Generate an lm-eval task folder (for --include_path) that is lm-eval's own
`leaderboard_mmlu_pro` task reading a local MMLU-Pro `test.jsonl` instead of the hub dataset
`TIGER-Lab/MMLU-Pro`.

The YAML and its utils.py are taken at run time from the installed lm-eval's
tasks/leaderboard/mmlu_pro/ folder, so the prompt (doc_to_text), the choices (" A".." J", as
many as the question has options), the target and the few-shot sampler are that version's own.
Only the data source changes: `dataset_path: json` with `data_files` naming the local files.

The task name stays `leaderboard_mmlu_pro`: an --include_path task overrides the built-in one
of the same name, so lm-eval's output reads as usual. lm-eval's doc_id is then the row index
in test.jsonl (no process_docs, no shuffling), and `--limit N` takes the first N rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

TASK = "leaderboard_mmlu_pro"
SRC = Path("tasks") / "leaderboard" / "mmlu_pro"


class _Function(str):
    """The value of lm-eval's `!function module.name` YAML tag, kept to be written back."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))
_Dumper.add_representer(_Function, lambda d, v: d.represent_scalar("!function", str(v)))


def write_task_dir(lm_eval_dir: Path, test_file: Path, dest: Path, num_fewshot: int,
                   validation_file: Path | None = None) -> Path:
    """Write dest/mmlu_pro.yaml and dest/utils.py; returns the YAML's path.

    Few-shot examples come from the validation split, which is not always at hand (none exists
    offline next to /work/shared's test.jsonl): k-shot without one is refused, since lm-eval
    would otherwise quietly draw the examples from the test questions."""
    src = Path(lm_eval_dir) / SRC
    if not (src / "mmlu_pro.yaml").is_file():
        raise SystemExit(f"{src}: lm-eval's leaderboard_mmlu_pro task files are not there")
    test_file = Path(test_file).resolve()
    if not test_file.is_file():
        raise SystemExit(f"{test_file}: no MMLU-Pro test.jsonl there (pass --data-dir)")
    if num_fewshot and validation_file is None:
        raise SystemExit(f"{num_fewshot}-shot MMLU-Pro needs the validation split: pass "
                         "--validation-file (a validation.jsonl), or use --num-fewshot 0")
    cfg = yaml.load((src / "mmlu_pro.yaml").read_text(encoding="utf-8"), Loader=_Loader)
    assert cfg["task"] == TASK and cfg["test_split"] == "test", cfg
    assert "process_docs" not in cfg and "dataset_kwargs" not in cfg, \
        "the installed leaderboard_mmlu_pro changed shape; re-derive this generator"
    files = {"test": str(test_file)}
    if validation_file is not None:
        files[cfg["fewshot_split"]] = str(Path(validation_file).resolve())
    else:
        # The json builder makes only the splits named in data_files, and lm-eval reads the
        # few-shot split while building the task even at 0-shot: without a file it must go.
        cfg["fewshot_split"] = None
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": files}
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "utils.py", dest / "utils.py")
    out = dest / "mmlu_pro.yaml"
    out.write_text(yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                             width=10_000), encoding="utf-8")
    return out
