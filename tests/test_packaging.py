"""The wheel and the sdist carry the bundled MMLU; a wheel installed without the source tree
(what `pip install .` gives) reads it as the editable install does."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from mmlu_bench import bundled, dataset

ROOT = Path(__file__).resolve().parent.parent
DATA = ("mmlu_bench/data/mmlu.tar.xz", "mmlu_bench/data/mmlu_redux_2.0.tsv",
        "mmlu_bench/data/mmlu.tar.xz.LICENSE")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, sdist) built offline from a copy of the project (nothing written here)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src, out = tmp / "src", tmp / "dist"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mmlu_bench", src / "mmlu_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # An absolute path: pip reads a bare word as a package name to download.
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(src)], tmp)
    run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
         "build_meta.build_sdist(sys.argv[1])", str(out)], src)
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist


def run(argv: list[str], cwd: Path, **env: str) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_and_sdist_hold_the_archive(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as z:
        assert set(DATA) <= set(z.namelist())
        assert hashlib.sha256(z.read(DATA[0])).hexdigest() == bundled.SHA256
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split("/")[0]
        archive = t.extractfile(f"{top}/{DATA[0]}").read()
        assert hashlib.sha256(archive).hexdigest() == bundled.SHA256
        assert {f"{top}/{name}" for name in DATA} <= set(t.getnames())
    assert wheel.stat().st_size < 2_000_000


def test_an_installed_wheel_runs_mmlu_offline(built, tmp_path):
    """`pip install .` (no source tree behind it): the bundled MMLU loads, sha256-checked."""
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(site), str(built[0])], tmp_path)
    out = run([sys.executable, "-c", "from mmlu_bench import bundled, dataset; "
               "d = dataset.load(None, ('anatomy',)); "
               "print(bundled.ARCHIVE, d.source, len(d.test['anatomy']), len(d.dev['anatomy']))"],
              tmp_path, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    path, source, n_test, n_dev = out.split()
    assert Path(path).is_relative_to(site.resolve())  # the installed copy, not this tree
    assert (source, n_test, n_dev) == (bundled.source(), "135", "5")
    assert dataset.load(None, ("anatomy",)).source == source
