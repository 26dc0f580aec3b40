"""The SNLI sample shipped with the project, and how it is rebuilt from the SNLI 1.0 jsonl files.

The quickstart has to learn on a fresh offline machine, so a small slice of real SNLI 1.0
(CC BY-SA 4.0; attribution and licence in the folder's LICENSE) ships in
``experiments/data/snli_sample/``, inside the ``experiments`` package that uses it (no new
top-level folder). Its files are named as ``task_defs/snli.yml`` expects, and every line is a
line of the SNLI jsonl files of ``../shared/data/snli`` (PROVENANCE.md there), unchanged:

- ``snli_train.jsonl``: SNLI dev lines 1-3,000 (``dev-0`` .. ``dev-2999``), the same pairs the
  head-to-head grid trains on (its first 3,000 dev pairs);
- ``snli_dev.jsonl``: SNLI dev lines 3,002-3,501 (``dev-3001`` .. ``dev-3500``); ``dev-3000`` is
  skipped because it shares its premise with ``dev-2998``/``dev-2999`` of the training part;
- ``snli_test.jsonl``: SNLI test lines 1-1,000 (``test-0`` .. ``test-999``), the first half of the
  grid's 2,000 test pairs. SNLI's own dev/test split shares no premise with these.

Rebuild it (byte for byte; the source files' hashes are checked first) or check it::

    python -m experiments.snli_sample --snli_dir ../shared/data/snli            # rewrites the sample
    python -m experiments.snli_sample --snli_dir ../shared/data/snli --check    # compares, writes nothing
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from mt_dnn.errors import DataError
from noise_training.atomic_files import atomic_write_bytes

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "snli_sample"


@dataclass(frozen=True)
class SamplePart:
    file: str  # the sample's file (a split path of task_defs/snli.yml)
    source: str  # the SNLI file its lines come from
    start: int  # index (0-based) of the first line taken
    count: int


PARTS = (
    SamplePart(file="snli_train.jsonl", source="snli_dev.jsonl", start=0, count=3000),
    SamplePart(file="snli_dev.jsonl", source="snli_dev.jsonl", start=3001, count=500),
    SamplePart(file="snli_test.jsonl", source="snli_test.jsonl", start=0, count=1000),
)
# The shared SNLI jsonl files this sample was cut from (../shared/data/snli/PROVENANCE.md).
SOURCE_SHA256 = {
    "snli_dev.jsonl": "11399f373d49e1e7dbdd1f0f23175bb99baf83eac37a1637baab08175b1328d5",
    "snli_test.jsonl": "0726abf7f3db1d3f00c3ea7dbe0879b8af8e7a79c2d0b63b9ff02d8eb6854c89",
}


def _source_lines(snli_dir: Path, name: str) -> list[bytes]:
    path = snli_dir / name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"--snli_dir {snli_dir}: cannot read {name} ({exc.strerror})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256[name]:
        raise DataError(f"{path}: sha256 {digest}, expected {SOURCE_SHA256[name]} "
                        "(the SNLI 1.0 jsonl of ../shared/data/snli/PROVENANCE.md)")
    return raw.splitlines(keepends=True)


def build_sample(*, snli_dir: Path) -> dict[str, bytes]:
    """The sample's files (name -> bytes), cut from the SNLI jsonl files in ``snli_dir``."""
    sources = {name: _source_lines(Path(snli_dir), name) for name in SOURCE_SHA256}
    files = {}
    for part in PARTS:
        lines = sources[part.source][part.start:part.start + part.count]
        if len(lines) != part.count:
            raise DataError(f"{snli_dir / part.source}: expected at least {part.start + part.count} lines")
        files[part.file] = b"".join(lines)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.snli_sample", description=__doc__.splitlines()[0])
    parser.add_argument("--snli_dir", required=True, help="folder with SNLI's snli_dev.jsonl and snli_test.jsonl")
    parser.add_argument("--out", default=str(SAMPLE_DIR), help="where the sample goes (default: the shipped folder)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    args = parser.parse_args(argv)
    try:
        files = build_sample(snli_dir=Path(args.snli_dir))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.check:
        differ = [name for name, data in files.items()
                  if not (out / name).is_file() or (out / name).read_bytes() != data]
        for name in differ:
            print(f"{out / name}: differs from what --snli_dir {args.snli_dir} gives", file=sys.stderr)
        if not differ:
            print(f"{out}: the sample matches {args.snli_dir}")
        return 1 if differ else 0
    for name, data in files.items():  # every file built and checked before the first is written
        atomic_write_bytes(out / name, data)
        (out / name).chmod(0o644)  # a shipped data file, readable by all (the temporary file was 0600)
    counts = {name: len(data.splitlines()) for name, data in files.items()}
    print(f"{out}: " + ", ".join(f"{name} ({count} pairs)" for name, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
