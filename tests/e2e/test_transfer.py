"""Uploads and downloads with the real client: regular files, LFS (basic and multipart),
folders with patterns, revisions, snapshots, offline mode, the `hf` CLI, default installs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from conftest import (lfs_pointer, make_client, sha256_bytes, sha256_file, unique, write_random,
                      write_tree)

UPLOAD_AND_DOWNLOAD = """
commit = api.upload_file(path_or_fileobj=ARGS["local"], path_in_repo=ARGS["path"],
                         repo_id=ARGS["repo"], commit_message=ARGS.get("message", "upload"))
local = api.hf_hub_download(ARGS["repo"], ARGS["path"])
emit({"commit": commit.oid, "sha256": sha256_file(local), "size": os.path.getsize(local)})
"""


def _roundtrip(client, hub, tmp_path: Path, path_in_repo: str, data: bytes) -> dict:
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    repo = hub.create_repo("roundtrip")
    run = client.py(UPLOAD_AND_DOWNLOAD, args={"repo": repo, "path": path_in_repo, "local": str(local)})
    assert run.result["sha256"] == sha256_bytes(data)
    assert run.result["size"] == len(data)
    assert run.result["commit"] == hub.head_sha(repo)
    return {"repo": repo, **run.result}


def test_upload_small_text_file(client, hub, tmp_path):
    data = "hello trove\nünïcödé line\n".encode()
    got = _roundtrip(client, hub, tmp_path, "notes/hello world.txt", data)
    # served raw at the resolve URL, regular file: ETag is the git blob id
    r = hub.http.get(f"/{got['repo']}/resolve/main/notes/hello%20world.txt")
    assert r.status_code == 200 and r.content == data


def _lfs_tree_entry(hub, repo: str, path: str) -> dict:
    r = hub.http.get(f"/api/models/{repo}/tree/main?recursive=true&expand=false",
                     headers=hub.auth(hub.token()))
    assert r.status_code == 200
    entries = {e["path"]: e for e in r.json()}
    return entries[path]


@pytest.mark.slow
def test_upload_30mb_lfs_basic_transfer(client, hub, tmp_path):
    data = write_random(tmp_path / "src.bin", 30 * 1000 * 1000)
    got = _roundtrip(client, hub, tmp_path, "weights/model.bin", data)
    entry = _lfs_tree_entry(hub, got["repo"], "weights/model.bin")
    assert entry["size"] == len(data)
    assert entry["lfs"]["oid"] == sha256_bytes(data)
    assert entry["lfs"]["pointerSize"] == len(lfs_pointer(data))


def _batch(hub, repo: str, oid: str, size: int) -> dict:
    r = hub.http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic", "multipart"],
              "objects": [{"oid": oid, "size": size}], "hash_algo": "sha256", "ref": {"name": "main"}},
        headers={**hub.auth(hub.token()),
                 "accept": "application/vnd.git-lfs+json",
                 "content-type": "application/vnd.git-lfs+json"},
    )
    assert r.status_code == 200, f"batch: {r.status_code} {r.text[:300]}"
    return r.json()


@pytest.mark.slow
def test_upload_lfs_multipart_transfer(trove_multipart, make_hub, tmp_path):
    hub = make_hub(trove_multipart)
    client = make_client(trove_multipart, tmp_path)
    repo = hub.create_repo("multipart-probe")
    # The server offers multipart strictly above the threshold, in parts of TROVE_LFS_PART_SIZE.
    big = 12_000_001
    obj = _batch(hub, repo, "ab" * 32, big)["objects"][0]
    header = obj["actions"]["upload"]["header"]
    assert int(header["chunk_size"]) == 2_000_000
    part_keys = sorted(int(k) for k in header if k.isdigit())
    assert part_keys == list(range(1, math.ceil(big / 2_000_000) + 1))
    small = _batch(hub, repo, "cd" * 32, 5_000_000)["objects"][0]
    assert "chunk_size" not in (small["actions"]["upload"].get("header") or {}), \
        "objects of exactly the threshold size use basic transfer"

    data = write_random(tmp_path / "src.bin", 12 * 1000 * 1000 + 12345)
    got = _roundtrip(client, hub, tmp_path, "shards/model.safetensors", data)
    entry = _lfs_tree_entry(hub, got["repo"], "shards/model.safetensors")
    assert entry["size"] == len(data) and entry["lfs"]["oid"] == sha256_bytes(data)


def _folder_fixture(base: Path) -> tuple[dict[str, bytes], set[str]]:
    files: dict[str, bytes] = {}
    for i in range(300):
        files[f"data/part{i % 10}/file{i:03d}.txt"] = f"row {i}\n".encode() * (i % 7 + 1)
    files["data/skip/secret.tmp"] = b"temporary"
    files["logs/run.log"] = b"not allowed"
    files["README.md"] = b"---\nlicense: mit\n---\n# Folder upload\n"
    files["docs/guide.md"] = b"# Guide\n"
    expected = {p for p in files if p.startswith("data/part") and not p.startswith("data/part9/")}
    expected |= {"README.md", "docs/guide.md", ".gitattributes"}
    return files, expected


UPLOAD_FOLDER = """
api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"],
                  allow_patterns=["data/**", "*.md"], ignore_patterns=["*.tmp", "data/part9/*"],
                  commit_message="folder upload")
emit(sorted(api.list_repo_files(ARGS["repo"])))
"""


@pytest.mark.parametrize("xet", [False, True], ids=["xet-disabled", "default-install"])
def test_upload_folder_nested_with_patterns(client, hub, tmp_path, xet):
    files, expected = _folder_fixture(tmp_path / "folder")
    write_tree(tmp_path / "folder", files)
    repo = hub.create_repo("folder")
    run = client.py(UPLOAD_FOLDER, xet=xet, args={"repo": repo, "folder": str(tmp_path / "folder")})
    assert set(run.result) == expected
    assert len(run.result) == len(expected)
    r = hub.http.get(f"/{repo}/resolve/main/data/part3/file003.txt")
    assert r.status_code == 200 and r.content == files["data/part3/file003.txt"]


REVISIONS = """
repo = ARGS["repo"]
c1 = api.upload_file(path_or_fileobj=b"content v1", path_in_repo="file.txt", repo_id=repo).oid
api.create_tag(repo, tag="v1.0", revision=c1, tag_message="first release")
c2 = api.upload_file(path_or_fileobj=b"content v2", path_in_repo="file.txt", repo_id=repo).oid
api.create_branch(repo, branch="dev", revision=c2)
api.create_branch(repo, branch="feature/x")
api.upload_file(path_or_fileobj=b"content dev", path_in_repo="file.txt", repo_id=repo, revision="dev")
api.upload_file(path_or_fileobj=b"content feature", path_in_repo="file.txt", repo_id=repo,
                revision="feature/x")
c4 = api.upload_file(path_or_fileobj=b"content v3", path_in_repo="file.txt", repo_id=repo).oid
out = {"c1": c1, "c2": c2, "c4": c4}
for label, rev in [("main", None), ("dev", "dev"), ("feature", "feature/x"), ("tag", "v1.0"),
                   ("sha", c2)]:
    path = api.hf_hub_download(repo, "file.txt", revision=rev)
    out[label] = open(path, "rb").read().decode()
emit(out)
"""


def test_download_at_branch_tag_and_commit(client, hub):
    repo = hub.create_repo("revisions")
    r = client.py(REVISIONS, args={"repo": repo}).result
    assert r["main"] == "content v3"
    assert r["dev"] == "content dev"
    assert r["feature"] == "content feature"
    assert r["tag"] == "content v1"
    assert r["sha"] == "content v2"
    assert len({r["c1"], r["c2"], r["c4"]}) == 3
    assert hub.head_sha(repo) == r["c4"]
    assert hub.head_sha(repo, revision="v1.0") == r["c1"]
    assert hub.head_sha(repo, revision=r["c2"]) == r["c2"]


def _nested_files(base: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"hidden_size": 8}\n',
        "a/b/c/deep.txt": b"deep\n",
        "a/sibling.txt": b"sibling\n",
        "space in name/ü file.txt": "unicode ✓\n".encode(),
        "empty.txt": b"",
    }
    write_tree(base, files)
    files["weights/model.bin"] = write_random(base / "weights" / "model.bin", 300_000)
    return files


SNAPSHOT = """
import os
folder = api.snapshot_download(ARGS["repo"])
got = {}
for root, _, names in os.walk(folder):
    for n in names:
        p = os.path.join(root, n)
        got[os.path.relpath(p, folder)] = sha256_file(p)
emit({"folder": folder, "files": got})
"""

OFFLINE = """
import os
folder = api.snapshot_download(ARGS["repo"])
single = api.hf_hub_download(ARGS["repo"], "a/b/c/deep.txt")
got = {}
for root, _, names in os.walk(folder):
    for n in names:
        p = os.path.join(root, n)
        got[os.path.relpath(p, folder)] = sha256_file(p)
emit({"folder": folder, "files": got, "single": sha256_file(single),
      "offline": huggingface_hub.constants.HF_HUB_OFFLINE})
"""


def test_snapshot_download_then_offline(client, hub, tmp_path, trove):
    files = _nested_files(tmp_path / "src")
    repo = hub.create_repo("snapshot")
    client.py('api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"])',
              args={"repo": repo, "folder": str(tmp_path / "src")})
    expected = {p: sha256_bytes(d) for p, d in files.items()}
    expected[".gitattributes"] = sha256_bytes(
        hub.http.get(f"/{repo}/resolve/main/.gitattributes").content)

    online = client.py(SNAPSHOT, args={"repo": repo}).result
    assert online["files"] == expected

    offline = client.py(OFFLINE, offline=True, args={"repo": repo}).result
    assert offline["offline"] is True
    assert offline["folder"] == online["folder"]
    assert offline["files"] == expected
    assert offline["single"] == expected["a/b/c/deep.txt"]


CLI_DOWNLOAD_CHECK = """
import os
got = {}
for root, dirs, names in os.walk(ARGS["dir"]):
    dirs[:] = [d for d in dirs if d != ".cache"]
    for n in names:
        p = os.path.join(root, n)
        got[os.path.relpath(p, ARGS["dir"])] = sha256_file(p)
emit(got)
"""


def test_hf_cli_upload_and_download(client, hub, tmp_path):
    files = _nested_files(tmp_path / "src")
    single = tmp_path / "single.bin"
    single_data = write_random(single, 2_000_000)
    repo = f"admin/{unique('cli')}"  # `hf upload` creates it (exist_ok path)

    client.cli("upload", repo, str(tmp_path / "src"))
    client.cli("upload", repo, str(single), "extra/renamed.bin")
    # uploading again to the now existing repo goes through the 409 + url path
    client.cli("upload", repo, str(tmp_path / "src" / "config.json"), "config.json")

    out_dir = tmp_path / "out"
    client.cli("download", repo, "--local-dir", str(out_dir))
    got = client.py(CLI_DOWNLOAD_CHECK, args={"dir": str(out_dir)}).result
    expected = {p: sha256_bytes(d) for p, d in files.items()}
    expected["extra/renamed.bin"] = sha256_bytes(single_data)
    expected.pop(".gitattributes", None)
    got.pop(".gitattributes", None)
    assert got == expected

    one = tmp_path / "one"
    client.cli("download", repo, "a/sibling.txt", "--local-dir", str(one))
    assert (one / "a" / "sibling.txt").read_bytes() == files["a/sibling.txt"]


DEFAULT_INSTALL = """
import io, logging, warnings
logging.basicConfig(level=logging.WARNING)
from huggingface_hub.utils._runtime import is_xet_available
repo = ARGS["repo"]
out = {"xet_available": is_xet_available()}
small = attempt(lambda: api.upload_file(path_or_fileobj=b"small and regular", path_in_repo="small.txt",
                                        repo_id=repo).oid)
out["small_upload"] = small
p = api.hf_hub_download(repo, "small.txt")
out["small_download"] = open(p, "rb").read().decode()
p = api.hf_hub_download(ARGS["lfs_repo"], "weights/model.bin")
out["lfs_download_sha256"] = sha256_file(p)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    big = attempt(api.upload_file, path_or_fileobj=ARGS["big"], path_in_repo="model.bin", repo_id=repo)
out["big_upload"] = big
out["warnings"] = [str(w.message) for w in caught]
emit(out)
"""


def test_default_install_downloads_and_uploads(client, hub, tmp_path):
    # An LFS file uploaded by an HF_HUB_DISABLE_XET=1 client ...
    lfs_repo = hub.create_repo("default-install-src")
    files = _nested_files(tmp_path / "src")
    client.py('api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"])',
              args={"repo": lfs_repo, "folder": str(tmp_path / "src")})
    # ... is downloadable by a default install, which uploads small files inline and
    # LFS-sized ones through Xet, with no warning about Xet.
    repo = hub.create_repo("default-install")
    head_before = hub.head_sha(repo)
    big = tmp_path / "big.bin"
    big_data = write_random(big, 1_000_000)
    run = client.py(DEFAULT_INSTALL, xet=True, timeout=180,
                    args={"repo": repo, "lfs_repo": lfs_repo, "big": str(big)})
    r = run.result
    assert r["xet_available"] is True, "the default install must have hf_xet active for this test"
    assert r["small_upload"]["ok"] is True, r["small_upload"]
    assert r["small_download"] == "small and regular"
    assert r["lfs_download_sha256"] == sha256_bytes(files["weights/model.bin"])
    assert r["big_upload"]["ok"] is True, r["big_upload"]
    assert "HF_HUB_DISABLE_XET" not in (run.output + " ".join(r["warnings"]))
    assert hub.head_sha(repo) != head_before
    files_now = {e["path"]: e for e in
                 hub.http.get(f"/api/models/{repo}/tree/main?recursive=true&expand=false").json()}
    assert files_now["model.bin"]["lfs"]["oid"] == sha256_bytes(big_data)
    assert os.path.exists(big)


def test_one_range_rule_on_resolve_and_the_lfs_download(client, hub, tmp_path):
    """A Range that is not one valid byte range is ignored (200, whole body); a valid one
    that selects nothing is 416 with `bytes */size`; the LFS download action serves ranges
    like resolve does."""
    data = write_random(tmp_path / "w.bin", 300_000)
    got = _roundtrip(client, hub, tmp_path, "w.bin", data)
    repo, sha = got["repo"], sha256_bytes(data)
    r = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                      json={"operation": "download", "objects": [{"oid": sha, "size": len(data)}]},
                      headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
    assert r.status_code == 200, r.text
    href = r.json()["objects"][0]["actions"]["download"]["href"]
    auth = hub.auth(hub.token())
    for url in (f"/{repo}/resolve/main/w.bin", href):
        for spec in ("bytes=abc", "bytes=", "bytes=,", "bytes=5", "bytes=--1", "bytes=x-5",
                     "bytes=0-1,5-6"):
            r = hub.http.get(url, headers={**auth, "range": spec})
            assert r.status_code == 200 and r.content == data, (url, spec, r.status_code)
        r = hub.http.get(url, headers={**auth, "range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == data[1000:2000], url
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        r = hub.http.get(url, headers={**auth, "range": f"bytes={len(data)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}", url
