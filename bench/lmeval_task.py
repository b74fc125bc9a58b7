"""Generate an lm-eval task folder (for --include_path) that is lm-eval's own `mmlu` task reading
the local CSV files instead of the hub dataset `cais/mmlu`.

The YAML files are derived at run time from the installed lm-eval's tasks/mmlu/default/ folder,
so the prompt templates, few-shot settings, group tree (mmlu -> 4 categories -> subjects) and
aggregation are the installed version's own. Only three things change:

- `dataset_path: csv` with `dataset_kwargs` naming the subject's test and dev files, their
  column names (the files are headerless) and `na_filter: false` (pandas would otherwise read
  the answer text "None" as a missing value);
- `process_docs` maps the CSV columns to the dataset's fields (question, choices, answer);
- with a subject subset, only those subjects are written and empty categories are dropped.

The task names are the originals (mmlu, mmlu_stem, mmlu_anatomy, ...): lm-eval lets an
--include_path task override a built-in one of the same name, so its output reads as usual.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

HELPER = Path(__file__).with_name("mmlu_local_csv.py")
COLUMNS = ["question", "A", "B", "C", "D", "answer"]
TEMPLATE = "_default_template_yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class _Dumper(yaml.SafeDumper):
    """Writes strings holding newlines double-quoted ("...\\n..."), as lm-eval's files do."""


def _str(dumper: yaml.SafeDumper, text: str):
    style = '"' if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


def write_task_dir(lm_eval_dir: Path, data_dir: Path, subjects: list[str], dest: Path) -> dict:
    """Write the task folder; returns {category group name: [subject task names]}."""
    src = Path(lm_eval_dir) / "tasks" / "mmlu" / "default"
    data_dir = Path(data_dir).resolve()
    if not (src / "_mmlu.yaml").is_file():
        raise SystemExit(f"{src}: lm-eval's mmlu task files are not there")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HELPER, dest / HELPER.name)

    template = _load(src / TEMPLATE)
    assert "process_docs" not in template, "the installed mmlu template already has process_docs"
    template["dataset_path"] = "csv"
    # `!function` is lm-eval's YAML tag: safe_dump cannot write it, so the line is appended.
    (dest / TEMPLATE).write_text(
        _dump(template) + f"process_docs: !function {HELPER.stem}.process_docs\n",
        encoding="utf-8")
    groups = _write_subjects(src, data_dir, set(subjects), dest)
    return _write_groups(src, groups, dest)


def _write_subjects(src: Path, data_dir: Path, wanted: set[str], dest: Path) -> dict:
    """One YAML per chosen subject; returns {tag (e.g. mmlu_stem_tasks): [subject tasks]}."""
    groups: dict[str, list[str]] = {}
    for path in sorted(src.glob("mmlu_*.yaml")):
        cfg = _load(path)
        subject = cfg["dataset_name"]
        if subject not in wanted:
            continue
        cfg["dataset_kwargs"] = {
            "data_files": {"test": str(data_dir / "test" / f"{subject}_test.csv"),
                           "dev": str(data_dir / "dev" / f"{subject}_dev.csv")},
            "column_names": COLUMNS,
            "na_filter": False,
        }
        groups.setdefault(cfg["tag"], []).append(cfg["task"])
        (dest / path.name).write_text(_dump(cfg), encoding="utf-8")
    missing = wanted - {t.removeprefix("mmlu_") for ts in groups.values() for t in ts}
    if missing:
        raise SystemExit(f"lm-eval's mmlu task has no subject(s) {sorted(missing)}")
    return groups


def _write_groups(src: Path, groups: dict, dest: Path) -> dict:
    """The category groups that have a chosen subject, and the top `mmlu` group over them."""
    top = _load(src / "_mmlu.yaml")
    kept, tree = [], {}
    for group_name in top["task"]:
        cfg = _load(src / f"_{group_name}.yaml")
        members = [t for tag in cfg["task"] for t in groups.get(tag, [])]
        if not members:
            continue  # a category with no chosen subject: lm-eval rejects an empty group
        kept.append(group_name)
        tree[group_name] = members
        (dest / f"_{group_name}.yaml").write_text(_dump(cfg), encoding="utf-8")
    top["task"] = kept
    (dest / "_mmlu.yaml").write_text(_dump(top), encoding="utf-8")
    return tree
