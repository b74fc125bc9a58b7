"""Data loading: the bundled MMLU, its unpacked folder, a tiny CSV folder, data.tar, and a fake
hub cache."""

from __future__ import annotations

import io
import tarfile

import pytest

from mmlu_bench import bundled, cli, dataset, records
from mmlu_bench.errors import DataError, UserError
from mmlu_bench.tasks.mmlu import CATEGORIES, MMLU, SUBJECTS

ROW = 'What is 2+2?,3,4,5,6,B\n"Quoted, with comma",a,b,c,d,D\n'


def write_folder(root, subjects=("anatomy",), test=ROW, dev=ROW):
    for split, text in (("test", test), ("dev", dev)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for s in subjects:
            (root / split / f"{s}_{split}.csv").write_text(text)
    return root


def test_real_data_has_14042_test_and_285_dev_questions(mmlu_dir):
    data = dataset.load(None, SUBJECTS)  # the bundled archive, the default
    assert data.source == bundled.source()
    # Unpacked into the original layout it reads as the same questions.
    assert dataset.load(str(mmlu_dir), SUBJECTS).test == data.test
    assert sum(len(v) for v in data.test.values()) == 14042
    assert sum(len(v) for v in data.dev.values()) == 285
    q = data.test["anatomy"][3]
    assert (q.subject, q.index, q.qid) == ("anatomy", 3, "anatomy/3")
    assert all(len(q.choices) == 4 and 0 <= q.gold <= 3 for v in data.test.values() for q in v)


def test_categories_match_lm_eval_sizes():
    sizes = {c: len(s) for c, s in CATEGORIES.items()}
    assert sizes == {"stem": 19, "other": 13, "social_sciences": 12, "humanities": 13}


def test_csv_folder_parses_quotes_and_letters(tmp_path):
    data = dataset.load(str(write_folder(tmp_path)), ("anatomy",))
    first, second = data.test["anatomy"]
    assert first.choices == ("3", "4", "5", "6") and first.gold == 1
    assert second.question == "Quoted, with comma" and second.gold == 3


def test_folder_with_data_subfolder_and_tar(tmp_path):
    write_folder(tmp_path / "x" / "data")
    assert dataset.load(str(tmp_path / "x"), ("anatomy",)).test["anatomy"][0].gold == 1
    tar_path = tmp_path / "data.tar"
    with tarfile.open(tar_path, "w") as tar:
        for split in ("test", "dev"):
            blob = ROW.encode()
            info = tarfile.TarInfo(f"data/{split}/anatomy_{split}.csv")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    data = dataset.load(str(tar_path), ("anatomy",))
    assert len(data.test["anatomy"]) == 2 and data.source.startswith("tar:")


@pytest.mark.parametrize("text, message", [
    ("q,a,b,c,B\n", "anatomy_test.csv:1: expected 6 columns"),
    ("q,a,b,c,d,B\nq,a,b,c,d,E\n", "anatomy_test.csv:2: answer must be one of A, B, C, D"),
    ("", "anatomy_test.csv: file is empty"),
])
def test_malformed_csv_names_file_and_line(tmp_path, text, message):
    write_folder(tmp_path, test=text)
    with pytest.raises(DataError, match=message):
        dataset.load(str(tmp_path), ("anatomy",))


def test_non_utf8_byte_names_line(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "test" / "anatomy_test.csv").write_bytes(b"q,a,b,c,d,A\nq\xff,a,b,c,d,A\n")
    with pytest.raises(DataError, match=r"anatomy_test.csv:2: not valid UTF-8"):
        dataset.load(str(tmp_path), ("anatomy",))


def test_missing_subject_file_and_empty_folder(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(DataError, match="virology_test.csv: missing"):
        dataset.load(str(tmp_path), ("anatomy", "virology"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MMLU files here"):
        dataset.load(str(tmp_path / "empty"), ("anatomy",))


def test_resolve_subjects():
    assert MMLU().resolve("virology, anatomy") == ("anatomy", "virology")
    assert len(MMLU().resolve("stem")) == 19
    assert len(MMLU().resolve(None)) == 57
    with pytest.raises(UserError, match="unknown subject 'anatomyy'.*Did you mean anatomy"):
        MMLU().resolve("anatomyy")


def test_hub_dataset_from_a_local_cache_offline(tmp_path, monkeypatch, capsys):
    """A fake hub cache in the layout huggingface_hub writes, read with the network off (the
    test split in two files: row numbers run on across them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    snapshot = tmp_path / "datasets--cais--mmlu" / "snapshots" / ("a" * 40)
    (snapshot / "anatomy").mkdir(parents=True)
    (tmp_path / "datasets--cais--mmlu" / "refs").mkdir()
    (tmp_path / "datasets--cais--mmlu" / "refs" / "main").write_text("a" * 40)
    for split, part, rows in (("test", 0, range(2)), ("test", 1, range(2, 3)),
                              ("dev", 0, range(5))):
        table = pa.table({"question": [f"{split} q{i}" for i in rows],
                          "subject": ["anatomy"] * len(rows),
                          "choices": [["w", "x", "y", "z"]] * len(rows),
                          "answer": [2] * len(rows)})
        pq.write_table(table, snapshot / "anatomy" / f"{split}-0000{part}-of-00002.parquet")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    data = dataset.load(None, ("anatomy",), dataset.HUB)
    assert [q.question for q in data.test["anatomy"]] == ["test q0", "test q1", "test q2"]
    assert [q.qid for q in data.test["anatomy"]] == ["anatomy/0", "anatomy/1", "anatomy/2"]
    assert data.dev["anatomy"][0].gold == 2
    assert data.source == f"hub:cais/mmlu@{'a' * 40}"  # the revision read
    # --data-source hub: the run reads it and names it.
    out = tmp_path / "run"
    assert cli.main(["run", "--model", "fake:x", "--data-source", "hub", "--subjects", "anatomy",
                     "--output", str(out), "--no-progress"]) == 0
    header = records.read(out / records.RECORDS)[0]
    assert header.backend_info["data_source"] == data.source
    assert f"Data: hub:cais/mmlu@{'a' * 40}" in capsys.readouterr().out


def test_hub_dataset_not_cached_offline_says_how(tmp_path, monkeypatch):
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="not in the local cache.*--data-dir"):
        dataset.load(None, ("anatomy",), dataset.HUB)
