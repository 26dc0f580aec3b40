"""Fetch the official ANLI v1.0 release once, verify every file, and install it safely.

Training needs the official R1-R3 train/dev/test files; this module downloads the
official zip, refuses archives that could write outside their folder, checks each file
against hashes pinned here (the archive itself has no published hash), and only then
moves the files into place, so a failed or tampered download never leaves half a dataset.

CLI: ``python -m mt_dnn.anli_download download-anli [--data_dir DIR] [--url URL]
[--archive_sha256 HEX]`` and ``... verify-anli [--data_dir DIR] [--splits ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from mt_dnn.errors import DataError

logger = logging.getLogger(__name__)

OFFICIAL_URL = "https://dl.fbaipublicfiles.com/anli/anli_v1.0.zip"
DEFAULT_DATA_DIR = "data/anli_v1.0"
HASH_KINDS = ("sha256", "git-blob-sha1")
ROUNDS = ("R1", "R2", "R3")
SPLITS = ("train", "dev", "test")

# dev/test: sha256 from shared/data/anli_v1.0/SHA256SUMS; train: the official files' git blob
# ids (`git hash-object FILE`) from shared/data/anli_v1.0/PROVENANCE.md, the only hashes known.
OFFICIAL_FILE_HASHES: dict[str, tuple[str, str]] = {
    "R1/train.jsonl": ("git-blob-sha1", "e897bc3420e951f95bbc89f144863c44a0e953c1"),
    "R1/dev.jsonl": ("sha256", "4d6a01499b91046be7aa9daf1d1e716261b0c08698962b23389477c8400064e2"),
    "R1/test.jsonl": ("sha256", "11b257c63a3caa825b80ac86b6d895407c62616d56036482344344099e7d3fa5"),
    "R2/train.jsonl": ("git-blob-sha1", "16ea2526d57458bc3c335a70b31d2583bd0022bf"),
    "R2/dev.jsonl": ("sha256", "7b90cd9c9cb7d8ff12bc31257a56bf219718704c5798faf3b295b9e94b14b889"),
    "R2/test.jsonl": ("sha256", "804dbe173fbe08e6e069db8811016ebe5e065dfd1c47ed741dac6d8816f4fadc"),
    "R3/train.jsonl": ("git-blob-sha1", "1a4b0950c6d5135c609d8d6dc41d8187b5e8b1f0"),
    "R3/dev.jsonl": ("sha256", "42eca71392a3c90ee0dc83bb2cedb45165279f903a9c706bf11337be11c469bd"),
    "R3/test.jsonl": ("sha256", "fe456c2935f71d7ffe49bd8d95c2b2355f7383f72423c3018fa40479992f0004"),
}

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def hash_file(*, path: Path | str, kind: str) -> str:
    """Hex digest of a file: ``sha256`` or ``git-blob-sha1`` (what `git hash-object` prints)."""
    if kind == "sha256":
        digest = hashlib.sha256()
    elif kind == "git-blob-sha1":
        digest = hashlib.sha1()
        # git hashes a header naming the size before the content
        digest.update(b"blob %d\0" % Path(path).stat().st_size)
    else:
        raise DataError(f"unknown hash kind {kind!r} for {path}; expected one of {', '.join(HASH_KINDS)}")
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_expected(expected: Mapping[str, tuple[str, str]]) -> None:
    for rel, (kind, _) in expected.items():
        if kind not in HASH_KINDS:
            raise DataError(f"expected hash for {rel}: unknown kind {kind!r}; expected one of {', '.join(HASH_KINDS)}")
        if not _is_safe_member(rel):
            raise DataError(f"expected file {rel!r} is not a plain relative path")


def verify_anli(*, data_dir: Path | str, expected: Mapping[str, tuple[str, str]] = OFFICIAL_FILE_HASHES) -> list[str]:
    """Problems (missing or mismatched files) under ``data_dir``; an empty list when all verify."""
    _check_expected(expected)
    folder = Path(data_dir)
    problems = []
    for rel, (kind, want) in expected.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"missing {path}")
            continue
        got = hash_file(path=path, kind=kind)
        if got != want.lower():
            problems.append(f"checksum mismatch for {path}: expected {kind} {want}, got {got}")
    return problems


def _where_to_put(*, url: str, target: Path, expected: Mapping[str, tuple[str, str]]) -> str:
    files = ", ".join(str(target / rel) for rel in expected)
    return f"put the official files at {files}, or download {url} by hand and unzip it into {target}"


def _download(*, url: str, dest: Path, timeout: float, target: Path, expected: Mapping[str, tuple[str, str]]) -> None:
    """Stream ``url`` into ``dest`` (a temp file the caller removes on failure)."""
    hint = _where_to_put(url=url, target=target, expected=expected)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=PurePosixPath(url).name or "download", disable=total is None) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as err:
        raise DataError(f"could not download {url}: HTTP error {err.code} ({_one_line(err.reason)}); {hint}") from None
    except urllib.error.URLError as err:
        raise DataError(f"could not download {url} ({_one_line(err.reason)}); {hint}") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        # ValueError: a malformed URL; OSError also covers timeouts and resets mid-stream
        raise DataError(f"could not download {url} ({_one_line(err) or type(err).__name__}); {hint}") from None
    if total is not None and received != total:
        raise DataError(f"could not download {url} (got {received} of {total} bytes); {hint}")


def _is_safe_member(name: str) -> bool:
    """A relative path with no `..`, no root, no drive letter, in either slash style."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name) or "\0" in name:
        return False
    return ".." not in re.split(r"[\\/]", name)


def _check_members(*, archive: zipfile.ZipFile, url: str, root: Path) -> None:
    """Reject the whole archive before anything is written if any member is unsafe."""
    root = root.resolve()
    for info in archive.infolist():
        name = info.filename
        if not _is_safe_member(name) or not (root / name).resolve().is_relative_to(root):
            raise DataError(f"unsafe archive member {name!r} in {url}: it would be written outside the extraction folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"unsafe archive member {name!r} in {url}: symbolic links are not allowed")


def _strip_prefix(names: Sequence[str]) -> str:
    """The single top folder shared by every member (``anli_v1.0/``), or '' when there is none."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1:
        return ""
    top = tops.pop()
    if all(name.startswith(top + "/") for name in names):
        return top + "/"
    return ""


def _extract(*, archive: zipfile.ZipFile, into: Path) -> list[str]:
    """Write every file member under ``into`` with the top folder stripped; returns relative paths."""
    prefix = _strip_prefix([info.filename for info in archive.infolist()])
    written = []
    for info in archive.infolist():
        rel = info.filename[len(prefix):]
        if not rel or info.is_dir():
            if rel:
                (into / rel).mkdir(parents=True, exist_ok=True)
            continue
        dest = into / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        written.append(rel)
    return written


def download_anli(
    *,
    target_dir: Path | str,
    url: str = OFFICIAL_URL,
    expected: Mapping[str, tuple[str, str]] = OFFICIAL_FILE_HASHES,
    archive_sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Make ``target_dir`` hold verified ANLI files (``R1/train.jsonl`` ...); download only if needed."""
    _check_expected(expected)
    target = Path(target_dir).absolute()
    if not verify_anli(data_dir=target, expected=expected):
        logger.info("ANLI files in %s already verify; nothing downloaded", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # temp files live next to the target so the final os.replace stays on one filesystem
    fd, zip_name = tempfile.mkstemp(prefix=f".{target.name}.download-", suffix=".zip", dir=target.parent)
    os.close(fd)
    zip_path = Path(zip_name)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        logger.info("downloading %s", url)
        _download(url=url, dest=zip_path, timeout=timeout, target=target, expected=expected)
        if archive_sha256 is not None:
            got = hash_file(path=zip_path, kind="sha256")
            if got != archive_sha256.lower():
                raise DataError(f"checksum mismatch for archive {url}: expected sha256 {archive_sha256}, got {got}")
        try:
            with zipfile.ZipFile(zip_path) as archive:
                _check_members(archive=archive, url=url, root=staging)
                written = _extract(archive=archive, into=staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, OSError) as err:
            raise DataError(f"could not read the archive downloaded from {url}: {_one_line(err)}") from None
        problems = []
        for rel, (kind, want) in expected.items():
            path = staging / rel
            if not path.is_file():
                problems.append(f"{rel} is missing from the archive")
                continue
            got = hash_file(path=path, kind=kind)
            if got != want.lower():
                problems.append(f"checksum mismatch for {rel}: expected {kind} {want}, got {got}")
        if problems:
            raise DataError(f"archive from {url} failed verification, nothing installed into {target}: {'; '.join(problems)}")
        try:
            # one rename per verified file: each file in place is whole, never half-written
            for rel in dict.fromkeys(written):
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, dest)
        except OSError as err:
            raise DataError(f"could not move the verified ANLI files into {target}: {_one_line(err)}") from None
    finally:
        zip_path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("installed %d verified ANLI files into %s", len(expected), target)
    return target


def _default_data_dir() -> str:
    return os.environ.get("ANLI_DIR") or DEFAULT_DATA_DIR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mt_dnn.anli_download", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download-anli", help="download, verify and install ANLI v1.0")
    download.add_argument("--data_dir", default=None, help=f"target folder (default: $ANLI_DIR, else {DEFAULT_DATA_DIR})")
    download.add_argument("--url", default=OFFICIAL_URL, help="archive URL (http(s):// or file://)")
    download.add_argument("--archive_sha256", default=None, help="also check the archive's sha256")
    verify = commands.add_parser("verify-anli", help="check the ANLI files in a folder against the pinned hashes")
    verify.add_argument("--data_dir", default=None, help=f"folder to check (default: $ANLI_DIR, else {DEFAULT_DATA_DIR})")
    verify.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to check (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; ``argv`` without a command name means ``download-anli``."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] not in ("download-anli", "verify-anli"):
        if not args_in or args_in[0].startswith("-"):
            args_in = ["download-anli", *args_in]
    args = _parser().parse_args(args_in)
    data_dir = Path(args.data_dir or _default_data_dir())
    try:
        if args.command == "download-anli":
            folder = download_anli(
                target_dir=data_dir, url=args.url, expected=OFFICIAL_FILE_HASHES, archive_sha256=args.archive_sha256
            )
            print(f"ANLI v1.0 ready in {folder}: {len(OFFICIAL_FILE_HASHES)} files verified")
            return 0
        wanted = {rel: h for rel, h in OFFICIAL_FILE_HASHES.items() if PurePosixPath(rel).stem in args.splits}
        problems = verify_anli(data_dir=data_dir, expected=wanted)
        if problems:
            raise DataError(f"ANLI in {data_dir} does not verify: {'; '.join(problems)}")
        print(f"ANLI v1.0 in {data_dir}: {len(wanted)} files verified")
        return 0
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
