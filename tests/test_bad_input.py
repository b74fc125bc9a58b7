"""Every row of docs/errors.md: one clear line on stderr, a non-zero exit, nothing lost.

Most rows need no model (`--model fake:x`); the model-loading rows go through transformers.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import shutil
import struct
from pathlib import Path

import pytest

from mmlu_bench import records
from mmlu_bench.cli import main

from .conftest import require

SUBJECT = "anatomy"


def data_copy(tmp_path: Path, mmlu_dir: Path) -> Path:
    """The real anatomy files, copied so a test may break them."""
    root = tmp_path / "data"
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True)
        name = f"{SUBJECT}_{split}.csv"
        shutil.copy(mmlu_dir / split / name, root / split / name)
    return root


def run_argv(tmp_path: Path, data: Path, *extra: str, model: str = "fake:x") -> list[str]:
    argv = ["run", "--model", model, "--data-dir", str(data), "--subjects", SUBJECT,
            "--limit", "3", "--output", str(tmp_path / "out"), "--no-progress"]
    return argv + list(extra)


def fails(argv: list[str], capsys) -> str:
    """Run the CLI, check it failed with exactly one error line, return that line."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("mmlu-bench: error: "), err
    return lines[0]


def write_test_csv(data: Path, content: bytes) -> None:
    (data / "test" / f"{SUBJECT}_test.csv").write_bytes(content)


# Data and settings rows: (id, how to break the input -> argv, expected text).
def _missing_model(t, d):
    return run_argv(t, d, model="hf:/nonexistent/model-folder")


def _missing_gguf(t, d):
    return run_argv(t, d, model="hf:/nonexistent/model.gguf")


def _empty_data_folder(t, d):
    empty = t / "empty"
    empty.mkdir()
    return run_argv(t, empty)


def _no_data_folder(t, d):
    return run_argv(t, t / "no-such-folder")


def _test_csv(content: bytes):
    """A case whose test CSV holds `content` instead of the real questions."""
    def case(t, d):
        write_test_csv(d, content)
        return run_argv(t, d)
    return case


def _missing_csv(t, d):
    (d / "dev" / f"{SUBJECT}_dev.csv").unlink()
    return run_argv(t, d)


def _unknown_subject(t, d):
    return run_argv(t, d, "--subjects", "anatomyy")


def _limit(value):
    return lambda t, d: run_argv(t, d, "--limit", value)


def _shots(value):
    return lambda t, d: run_argv(t, d, "--num-fewshot", value)


def _output_under_file(t, d):
    # Tests run as root, and chmod does not stop root: a folder under a regular file does.
    (t / "plain-file").write_text("x")
    return run_argv(t, d, "--output", str(t / "plain-file" / "run"))


def _output_in_proc(t, d):
    return run_argv(t, d, "--output", "/proc/mmlu-bench-test-run")


CASES = [
    ("model-path-missing", _missing_model, "no such model file or folder"),
    ("gguf-path-missing", _missing_gguf, "no such GGUF file"),
    ("data-folder-empty", _empty_data_folder, "no MMLU files here"),
    ("data-folder-missing", _no_data_folder, "no such folder or tar archive"),
    ("csv-wrong-column-count", _test_csv(b"What is 2+2?,3,4,5,B\n"),
     "anatomy_test.csv:1: expected 6 columns"),
    ("csv-bad-answer-letter", _test_csv(b"What is 2+2?,3,4,5,6,E\n"),
     "anatomy_test.csv:1: answer must be one of A, B, C, D"),
    ("csv-not-utf8", _test_csv(b"What is 2+2?,3,4,5,6,B\nCaf\xe9?,a,b,c,d,A\n"),
     "anatomy_test.csv:2: not valid UTF-8"),
    ("csv-empty", _test_csv(b""), "anatomy_test.csv: file is empty"),
    ("csv-missing", _missing_csv, "anatomy_dev.csv: missing"),
    ("unknown-subject", _unknown_subject, "unknown subject 'anatomyy'. Did you mean anatomy?"),
    ("limit-zero", _limit("0"), "--limit 0: give a positive number"),
    ("limit-negative", _limit("-3"), "--limit -3: give a positive number"),
    ("fewshot-over-dev", _shots("6"), "--num-fewshot 6 is more than the 5 few-shot examples"),
    ("fewshot-negative", _shots("-1"), "--num-fewshot -1: use 0 to 5"),
    ("output-under-a-file", _output_under_file, "cannot write there (Not a directory)"),
    ("output-in-proc", _output_in_proc, "cannot write there ("),
]


@pytest.mark.parametrize("name,setup,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(name, setup, expected, tmp_path, mmlu_dir, capsys):
    data = data_copy(tmp_path, mmlu_dir)
    line = fails(setup(tmp_path, data), capsys)
    assert expected in line


def test_disk_full_keeps_what_was_recorded(tmp_path, mmlu_dir, capsys, monkeypatch):
    """The second batch hits a full disk half-way through its bytes."""
    data = data_copy(tmp_path, mmlu_dir)
    argv = run_argv(tmp_path, data, "--limit", "20")  # fake backend: batches of 16 + 4
    real, calls = records._write_all, []

    def full_disk(fd, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            real(fd, chunk[: len(chunk) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, chunk)

    monkeypatch.setattr(records, "_write_all", full_disk)
    line = fails(argv, capsys)
    assert "disk full while writing" in line
    assert "free space and rerun the same command to resume" in line
    _, kept, footer = records.read(tmp_path / "out" / records.RECORDS)
    # The first batch, and the whole lines of the half-written second one; the torn line dropped.
    assert 16 <= len(kept) < 20 and footer is None
    assert [r.index for r in kept] == list(range(len(kept)))

    monkeypatch.setattr(records, "_write_all", real)
    assert main(argv) == 0
    _, done, footer = records.read(tmp_path / "out" / records.RECORDS)
    assert [r.index for r in done] == list(range(20)) and footer.questions == 20


def _unquote(lines: list[str]) -> list[str]:
    return lines[:2] + [lines[2].replace('"pred": ', '"pred" ')] + lines[3:]


def _twice(lines: list[str]) -> list[str]:
    return lines[:3] + lines[2:3] + lines[3:]


@pytest.mark.parametrize("edit, message", [(_unquote, "records.jsonl:3: not a valid record line"),
                                           (_twice, "anatomy/1 is recorded twice")])
def test_hand_edited_records_are_refused_untouched(edit, message, tmp_path, mmlu_dir, capsys):
    data = data_copy(tmp_path, mmlu_dir)
    argv = run_argv(tmp_path, data)
    assert main(argv) == 0
    path = tmp_path / "out" / records.RECORDS
    path.write_text("".join(edit(path.read_text().splitlines(keepends=True))))
    before = path.read_bytes()
    assert message in fails(argv, capsys)
    assert path.read_bytes() == before
    assert message in fails(["report", str(tmp_path / "out")], capsys)


# Model files that exist but are broken. These load transformers (slow to import).
def _tiny_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "A": 1, "B": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)


def _truncated_safetensors(t: Path) -> str:
    import numpy as np
    from safetensors.numpy import save_file

    folder = t / "model"
    folder.mkdir()
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 3,
              "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 2}
    (folder / "config.json").write_text(json.dumps(config))
    _tiny_tokenizer(folder)
    weights = folder / "model.safetensors"
    save_file({"model.embed_tokens.weight": np.zeros((3, 8), np.float32)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:-40])  # cut short, as by a failed download
    return f"hf:{folder}"


def _corrupt_gguf(t: Path) -> str:
    path = t / "broken.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\0" * 16)  # a header, then nothing
    return f"hf:{path}"


def _junk_gguf(t: Path) -> str:
    path = t / "junk.gguf"
    path.write_bytes(b"<html>404 Not Found</html>")  # a download that saved an error page
    return f"hf:{path}"


def _folder_without_config(t: Path) -> str:
    (t / "not-a-model").mkdir()
    return f"hf:{t / 'not-a-model'}"


MODEL_CASES = [
    ("safetensors-truncated", _truncated_safetensors, "could not load the model (Error while "
                                                      "deserializing header"),
    ("gguf-corrupt", _corrupt_gguf, "broken.gguf: could not load the model ("),
    ("gguf-not-gguf", _junk_gguf, "junk.gguf: could not load the model ("),
    ("model-folder-without-config", _folder_without_config, "not a transformers model folder"),
]


@pytest.mark.parametrize("name,make,expected", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_broken_model_gets_one_clear_line(name, make, expected, tmp_path, mmlu_dir, capsys):
    require(importlib.util.find_spec("transformers") is not None,
            "transformers: pip install 'mmlu-bench[hf]'")
    data = data_copy(tmp_path, mmlu_dir)
    line = fails(run_argv(tmp_path, data, model=make(tmp_path)), capsys)
    assert expected in line
    assert not (tmp_path / "out" / records.RECORDS).exists()
