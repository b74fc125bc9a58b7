"""Rebuild mmlu_bench/data/mmlu.tar.xz from MMLU in the original release layout; print its sha256.

    python scripts/build_mmlu_archive.py DIR [--out FILE] [--check]

DIR holds dev/<subject>_dev.csv and test/<subject>_test.csv for the 57 subjects (the
original data.tar, unpacked). The archive is the same bytes whenever the CSVs are: members in
sorted order, fixed mtime, owner and mode, a plain ustar header, xz at a fixed preset (xz's
container has no timestamp). Put the printed sha256 in mmlu_bench/bundled.py (SHA256).
--check writes nothing and exits 1 unless the build equals the shipped archive and its pin.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
import tarfile
from pathlib import Path

from mmlu_bench import bundled
from mmlu_bench.tasks.mmlu import SUBJECTS

MTIME = 0  # 1970-01-01: any fixed value will do; 0 says "not a real date"
PRESET = 9 | lzma.PRESET_EXTREME


def names() -> list[str]:
    """The archive's members, in the order written: dev/ then test/, subjects sorted."""
    return sorted(f"{split}/{s}_{split}.csv" for split in ("dev", "test") for s in SUBJECTS)


def build(folder: Path) -> bytes:
    """The archive's bytes, from the CSVs under `folder` (a missing file is an error)."""
    missing = [n for n in names() if not (folder / n).is_file()]
    if missing:
        raise SystemExit(f"{folder}: {len(missing)} MMLU files missing, e.g. {missing[0]}; "
                         "pass the folder that holds dev/ and test/.")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names():
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                         preset=PRESET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="MMLU in the original layout (dev/, test/)")
    parser.add_argument("--out", type=Path, default=bundled.ARCHIVE,
                        help=f"where to write it (default {bundled.ARCHIVE})")
    parser.add_argument("--check", action="store_true",
                        help="compare with the shipped archive and its pinned sha256 instead")
    args = parser.parse_args(argv)
    data = build(args.folder.expanduser())
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        shipped = hashlib.sha256(bundled.ARCHIVE.read_bytes()).hexdigest()
        ok = digest == shipped == bundled.SHA256
        print(f"built {digest}\nshipped {shipped}\npinned {bundled.SHA256}\n"
              + ("identical" if ok else "DIFFERENT"))
        return 0 if ok else 1
    args.out.write_bytes(data)
    print(f"{digest}  {args.out} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
