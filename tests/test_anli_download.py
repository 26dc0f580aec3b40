"""ANLI download: real zips served over file:// and a loopback HTTP server, safe extraction, hashes."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from anli_copies import dev_test_only
from mt_dnn.anli_download import (
    OFFICIAL_FILE_HASHES,
    DataError,
    download_anli,
    hash_file,
    main,
    verify_anli,
)

ROUNDS = ("R1", "R2", "R3")
SPLITS = ("train", "dev", "test")


def _contents() -> dict[str, bytes]:
    return {
        f"{r}/{s}.jsonl": f'{{"uid": "{r}-{s}", "label": "e"}}\n'.encode() * (3 + i)
        for i, (r, s) in enumerate((r, s) for r in ROUNDS for s in SPLITS)
    }


def _expected(contents: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    """Train files by git blob id, dev/test by sha256, as the official table mixes them."""
    out = {}
    for rel, data in contents.items():
        if rel.endswith("train.jsonl"):
            out[rel] = ("git-blob-sha1", hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        else:
            out[rel] = ("sha256", hashlib.sha256(data).hexdigest())
    return out


def _build_zip(path: Path, contents: dict[str, bytes], *, extra: list[zipfile.ZipInfo | tuple[str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("anli_v1.0/README.txt", b"ANLI test archive\n")
        for rel, data in contents.items():
            archive.writestr(f"anli_v1.0/{rel}", data)
        for item in extra:
            if isinstance(item, zipfile.ZipInfo):
                archive.writestr(item, b"/etc/passwd")
            else:
                archive.writestr(item[0], item[1])
    return path


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture()
def contents() -> dict[str, bytes]:
    return _contents()


@pytest.fixture()
def good_zip(tmp_path: Path, contents) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    return _build_zip(served / "anli_v1.0.zip", contents)


class _Server:
    """Loopback HTTP server serving files by name and counting GET requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture()
def server(good_zip: Path):
    srv = _Server({"/anli_v1.0.zip": good_zip.read_bytes()})
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_http_download_installs_verified_files_then_is_idempotent(tmp_path, server, contents):
    target = tmp_path / "data" / "anli_v1.0"
    expected = _expected(contents)
    out = download_anli(target_dir=target, url=server.url("/anli_v1.0.zip"), expected=expected, timeout=10)
    assert out == target
    for rel, data in contents.items():
        assert (target / rel).read_bytes() == data  # top folder anli_v1.0/ stripped
    assert (target / "README.txt").is_file()
    assert verify_anli(data_dir=target, expected=expected) == []
    assert _tree(target.parent) == {"anli_v1.0"} | {f"anli_v1.0/{p}" for p in _tree(target)}  # no temp files
    assert server.requests == ["/anli_v1.0.zip"]

    download_anli(target_dir=target, url=server.url("/anli_v1.0.zip"), expected=expected, timeout=10)
    assert server.requests == ["/anli_v1.0.zip"]  # second call verified and did not download

    (target / "R2/dev.jsonl").write_bytes(b"tampered\n")
    download_anli(target_dir=target, url=server.url("/anli_v1.0.zip"), expected=expected, timeout=10)
    assert len(server.requests) == 2
    assert (target / "R2/dev.jsonl").read_bytes() == contents["R2/dev.jsonl"]


def test_http_404_says_so(tmp_path, server, contents):
    target = tmp_path / "anli"
    with pytest.raises(DataError) as err:
        download_anli(target_dir=target, url=server.url("/missing.zip"), expected=_expected(contents), timeout=10)
    message = str(err.value)
    assert "\n" not in message
    assert "HTTP error 404" in message and "/missing.zip" in message
    assert not target.exists()
    assert not any(p.name.startswith(".anli") for p in tmp_path.iterdir())


def test_unreachable_url_names_target_paths(tmp_path, contents):
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.zip"
    target = tmp_path / "anli"
    with pytest.raises(DataError) as err:
        download_anli(target_dir=target, url=url, expected=_expected(contents), timeout=5)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {url} (")
    assert str(target / "R1" / "train.jsonl") in message and str(target / "R3" / "test.jsonl") in message
    assert f"or download {url} by hand and unzip it into {target}" in message
    assert list(tmp_path.iterdir()) == []  # no temp download left behind


def test_file_url_and_archive_sha256(tmp_path, good_zip, contents):
    expected = _expected(contents)
    with pytest.raises(DataError, match=r"checksum mismatch for archive .* expected sha256 0+, got [0-9a-f]{64}"):
        download_anli(target_dir=tmp_path / "a", url=good_zip.as_uri(), expected=expected, archive_sha256="0" * 64)
    assert not (tmp_path / "a").exists()
    right = hashlib.sha256(good_zip.read_bytes()).hexdigest()
    download_anli(target_dir=tmp_path / "a", url=good_zip.as_uri(), expected=expected, archive_sha256=right)
    assert verify_anli(data_dir=tmp_path / "a", expected=expected) == []


def test_checksum_mismatch_installs_nothing(tmp_path, contents):
    bad = dict(contents)
    bad["R2/train.jsonl"] = b'{"uid": "forged"}\n'
    archive = _build_zip(tmp_path / "bad.zip", bad)
    expected = _expected(contents)
    parent = tmp_path / "data"
    target = parent / "anli"
    (target / "R1").mkdir(parents=True)
    (target / "R1" / "dev.jsonl").write_bytes(contents["R1/dev.jsonl"])  # a good file already present
    before_target, before_parent = _tree(target), _tree(parent)
    with pytest.raises(DataError) as err:
        download_anli(target_dir=target, url=archive.as_uri(), expected=expected)
    message = str(err.value)
    assert "\n" not in message
    want = expected["R2/train.jsonl"][1]
    got = hashlib.sha1(b"blob %d\0" % len(bad["R2/train.jsonl"]) + bad["R2/train.jsonl"]).hexdigest()
    assert f"checksum mismatch for R2/train.jsonl: expected git-blob-sha1 {want}, got {got}" in message
    assert "R1/train.jsonl" not in message  # only the bad file is named
    assert _tree(target) == before_target and _tree(parent) == before_parent


def test_missing_member_is_named(tmp_path, contents):
    partial = {k: v for k, v in contents.items() if k != "R3/dev.jsonl"}
    archive = _build_zip(tmp_path / "partial.zip", partial)
    with pytest.raises(DataError, match=r"R3/dev\.jsonl is missing from the archive"):
        download_anli(target_dir=tmp_path / "anli", url=archive.as_uri(), expected=_expected(contents))
    assert not (tmp_path / "anli").exists()


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("anli_v1.0/R1/link.jsonl")
    info.create_system = 3  # unix, so the mode bits in external_attr are meaningful
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "/abs.txt", "anli_v1.0/../../evil.txt", "C:/evil.txt", "anli_v1.0\\..\\..\\evil.txt", "symlink"],
)
def test_unsafe_members_are_rejected(tmp_path, contents, member):
    extra = [_symlink_member()] if member == "symlink" else [(member, b"escaped\n")]
    work = tmp_path / "work"
    work.mkdir()
    archive = _build_zip(tmp_path / "evil.zip", contents, extra=extra)
    name = _symlink_member().filename if member == "symlink" else member
    with zipfile.ZipFile(archive) as check:  # the raw name really is in the archive
        assert name in check.namelist()
    target = work / "data" / "anli"
    before = _tree(tmp_path)
    with pytest.raises(DataError) as err:
        download_anli(target_dir=target, url=archive.as_uri(), expected=_expected(contents))
    message = str(err.value)
    assert "\n" not in message and "unsafe archive member" in message and repr(name) in message
    assert ("symbolic links" in message) == (member == "symlink")
    assert _tree(tmp_path) - before <= {"work/data"}  # only the target's parent, now empty
    assert not target.exists() and list((work / "data").iterdir()) == []
    assert not Path("/abs.txt").exists() or Path("/abs.txt").read_bytes() != b"escaped\n"


def test_verify_anli_on_real_dev_test_files(anli_dir, tmp_path):
    dev_test = {rel: h for rel, h in OFFICIAL_FILE_HASHES.items() if not rel.endswith("train.jsonl")}
    assert len(dev_test) == 6 and len(OFFICIAL_FILE_HASHES) == 9
    assert verify_anli(data_dir=anli_dir, expected=dev_test) == []
    # the pinned constants agree with the folder's own SHA256SUMS, where it has one (the shared folder does)
    if (anli_dir / "SHA256SUMS").is_file():
        sums = dict(line.split()[::-1] for line in (anli_dir / "SHA256SUMS").read_text().splitlines() if line.strip())
        assert {rel: h for rel, (_, h) in dev_test.items()} == {rel: h for rel, h in sums.items() if rel in dev_test}
    # without the training files (a copy: $ANLI_DIR may hold the whole release) exactly those are missing
    partial = dev_test_only(anli_dir, tmp_path / "dev_test")
    problems = verify_anli(data_dir=partial, expected=OFFICIAL_FILE_HASHES)
    assert sorted(problems) == sorted(f"missing {partial / r / 'train.jsonl'}" for r in ROUNDS)
    # a one-byte change is caught
    copy = tmp_path / "R1"
    copy.mkdir()
    data = (anli_dir / "R1" / "dev.jsonl").read_bytes()
    (copy / "dev.jsonl").write_bytes(data[:-1] + b" ")
    [problem] = verify_anli(data_dir=tmp_path, expected={"R1/dev.jsonl": OFFICIAL_FILE_HASHES["R1/dev.jsonl"]})
    assert problem.startswith(f"checksum mismatch for {copy / 'dev.jsonl'}: expected sha256 4d6a0149")


def test_git_blob_hash_matches_git(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    path = tmp_path / "small.jsonl"
    path.write_bytes(b'{"uid": "x", "premise": "caf\xc3\xa9", "label": "n"}\n' * 7)
    printed = subprocess.run([git, "hash-object", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    assert hash_file(path=path, kind="git-blob-sha1") == printed
    assert hash_file(path=path, kind="sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="unknown hash kind 'md5'"):
        hash_file(path=path, kind="md5")


def test_main_exit_codes_and_messages(tmp_path, capsys, monkeypatch, good_zip, contents):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = tmp_path / "cli"
    assert main(["download-anli", "--data_dir", str(target), "--url", f"http://127.0.0.1:{port}/x.zip"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: could not download http://127.0.0.1:{port}/x.zip (")
    assert str(target / "R1" / "train.jsonl") in err

    # the built-in hashes cannot match the test archive: the mismatch is reported, exit 1
    assert main(["download-anli", "--data_dir", str(target), "--url", good_zip.as_uri()]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: archive from") and "checksum mismatch for R1/train.jsonl" in err
    assert not target.exists()

    # verify-anli reads $ANLI_DIR when --data_dir is not given
    real = tmp_path / "real"
    monkeypatch.setenv("ANLI_DIR", str(real))
    assert main(["verify-anli"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"missing {real / 'R1' / 'dev.jsonl'}" in err


def test_main_success_on_real_files(anli_dir, tmp_path, capsys, monkeypatch):
    copy = dev_test_only(anli_dir, tmp_path / "anli")  # $ANLI_DIR may hold the train files too
    monkeypatch.setenv("ANLI_DIR", str(copy))
    assert main(["verify-anli", "--splits", "dev", "test"]) == 0
    assert capsys.readouterr().out.strip() == f"ANLI v1.0 in {copy}: 6 files verified"
    assert main(["verify-anli"]) == 1  # the train files are not in the copy
    assert "missing" in capsys.readouterr().err


def test_main_download_success_and_module_entry(tmp_path, good_zip, contents, monkeypatch, capsys):
    import mt_dnn.anli_download as module

    monkeypatch.setattr(module, "OFFICIAL_FILE_HASHES", _expected(contents))
    target = tmp_path / "t"
    assert main(["--data_dir", str(target), "--url", good_zip.as_uri()]) == 0  # no command = download-anli
    out = capsys.readouterr().out.strip()
    assert out == f"ANLI v1.0 ready in {target}: 9 files verified"
    assert (target / "R3" / "test.jsonl").read_bytes() == contents["R3/test.jsonl"]

    run = subprocess.run(
        [sys.executable, "-m", "mt_dnn.anli_download", "verify-anli", "--data_dir", str(target)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 1 and run.stderr.startswith("error: ANLI in") and "Traceback" not in run.stderr
