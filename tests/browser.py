"""Real headless Chromium for the HTML tests (Debian: apt-get install -y chromium).

Console messages (script errors, console.error, and the errors Chromium reports for invalid
SVG attributes such as a NaN width) reach stderr with --enable-logging=stderr as lines with
":CONSOLE"; a page without any is a page without console errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .conftest import require

INSTALL = "apt-get update && apt-get install -y chromium"


def executable() -> str:
    path = shutil.which("chromium")
    require(path is not None, f"real Chromium for the HTML report tests: {INSTALL}")
    return path


def _run(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [executable(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *flags,
           page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def load(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console lines) for a local page."""
    proc = _run(page, profile, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def screenshot(page: Path, png: Path, profile: Path, size: tuple[int, int] = (1100, 2400)) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(page, profile, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
                "--hide-scrollbars")
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    return png


def artifacts(default: Path) -> Path:
    """Where screenshots go: $MMLU_BENCH_ARTIFACTS, else the test's tmp folder."""
    return Path(os.environ.get("MMLU_BENCH_ARTIFACTS") or default)
