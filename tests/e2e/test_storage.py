"""One chunk store for LFS and Xet, with the real client: a plain LFS upload of a variant of a
Xet-uploaded file stores only the changed bytes, every file reads back both ways, and
`trove gc` / `trove storage stats` work on a running server's data dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_client, sha256_bytes, store_dir

UPLOAD = """
info = api.upload_file(path_or_fileobj=ARGS["local"], path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
emit({"commit": info.oid})
"""

DOWNLOAD = """
from huggingface_hub import hf_hub_download
p = hf_hub_download(ARGS["repo"], ARGS["path"])
emit({"sha256": sha256_file(p), "size": os.path.getsize(p)})
"""

CHUNK_MAX = 128 * 1024


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_bytes(server) -> int:
    """Everything the store keeps: xorbs and whole-file objects."""
    lfs = store_dir(server)
    return dir_bytes(lfs / "xorbs") + dir_bytes(lfs / "objects")


def variant(data: bytes, changed: int) -> bytes:
    at = len(data) // 3
    return data[:at] + os.urandom(changed) + data[at + changed:]


def check_downloads(server, tmp_path: Path, repo: str, path: str, data: bytes) -> None:
    for xet in (True, False):
        home = tmp_path / f"dl-{path}-{xet}"
        home.mkdir(parents=True, exist_ok=True)
        got = make_client(server, home).py(
            DOWNLOAD, xet=xet, args={"repo": repo, "path": path}).result
        assert got["sha256"] == sha256_bytes(data), (path, xet)


@pytest.mark.slow
def test_an_lfs_upload_of_a_xet_files_variant_stores_only_the_changed_bytes(trove, client, hub, tmp_path):
    repo = hub.create_repo("one-store")
    base = os.urandom(64 << 20)
    (tmp_path / "base.bin").write_bytes(base)
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "base.bin", "local": str(tmp_path / "base.bin")})
    before = store_bytes(trove)
    changed = len(base) // 10
    tuned = variant(base, changed)
    (tmp_path / "tuned.bin").write_bytes(tuned)
    client.py(UPLOAD, xet=False, args={"repo": repo, "path": "tuned.bin", "local": str(tmp_path / "tuned.bin")})
    growth = store_bytes(trove) - before
    print(f"store growth {growth} B for {changed} changed bytes ({growth / changed:.4f}x)")
    # The aim: the changed bytes, within 7%, and one chunk per edit boundary (two
    # edges). Measured 1.0025x to 1.089x over runs of random data (the spread is noted in
    # docs/storage.md).
    assert changed <= growth <= 1.07 * changed + 2 * CHUNK_MAX, (growth, changed)
    check_downloads(trove, tmp_path, repo, "tuned.bin", tuned)
    check_downloads(trove, tmp_path, repo, "base.bin", base)


def xorb_files(server) -> set[Path]:
    return {p for p in (store_dir(server) / "xorbs").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_plain_lfs_upload_of_new_bytes_fills_its_xorbs(trove, client, hub, tmp_path):
    # 2 × 64 MiB of new bytes: 3 xorbs (locally 2 full and what the records' headers push
    # past them; in S3 mode 1 full and the last 64 MiB in two halves), not the dozen of
    # ever smaller ones an upload used to end with. Read back both ways (in S3 mode the
    # plain-HTTP download streams the xorbs from the bucket).
    repo = hub.create_repo("full-xorbs")
    data = os.urandom(128 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    before = xorb_files(trove)
    client.py(UPLOAD, xet=False, args={"repo": repo, "path": "big.bin", "local": str(tmp_path / "big.bin")})
    added = sorted(p.stat().st_size for p in xorb_files(trove) - before)
    assert len(added) == 3, added
    assert added[-1] > 63 << 20, added
    assert added[0] > 30 << 20 or added[0] < 1 << 20, added
    check_downloads(trove, tmp_path, repo, "big.bin", data)


def test_gc_frees_a_deleted_repos_bytes_and_stats_count_them(trove, client, hub, tmp_path):
    keep = hub.create_repo("gc-keep")
    drop = hub.create_repo("gc-drop")
    kept = os.urandom(3 << 20)
    dropped = os.urandom(3 << 20)
    (tmp_path / "kept.bin").write_bytes(kept)
    (tmp_path / "dropped.bin").write_bytes(dropped)
    client.py(UPLOAD, xet=False, args={"repo": keep, "path": "w.bin", "local": str(tmp_path / "kept.bin")})
    client.py(UPLOAD, xet=False, args={"repo": drop, "path": "w.bin", "local": str(tmp_path / "dropped.bin")})

    stats = json.loads(trove.admin_cli("storage", "stats", "--json"))
    names = {r["name"] for r in stats["repos"]}
    assert f"model:{keep}" in names and f"model:{drop}" in names
    assert stats["stored_bytes"] >= len(kept) + len(dropped)

    r = hub.http.request("DELETE", "/api/repos/delete", headers=hub.auth(hub.token()),
                         json={"name": drop.split("/")[1], "organization": drop.split("/")[0], "type": "model"})
    assert r.status_code == 200, r.text[:300]
    before = store_bytes(trove)
    dry = json.loads(trove.admin_cli("gc", "--dry-run", "--grace", "0s"))
    assert store_bytes(trove) == before
    report = json.loads(trove.admin_cli("gc", "--grace", "0s"))
    assert report["objects_forgotten"] == dry["objects_forgotten"] >= 1
    freed = before - store_bytes(trove)
    # At least the deleted repository's bytes (other tests' deleted repos may go too).
    assert freed >= len(dropped), (freed, report)
    check_downloads(trove, tmp_path, keep, "w.bin", kept)


@pytest.mark.slow
def test_a_cold_cache_xet_upload_of_an_lfs_files_variant_stores_only_the_changed_bytes(trove, hub, bob, tmp_path):
    repo = hub.create_repo("cold-dedup")
    base = os.urandom(64 << 20)
    (tmp_path / "base.bin").write_bytes(base)
    lfs_client = make_client(trove, tmp_path / "lfs-client")
    lfs_client.py(UPLOAD, xet=False, args={"repo": repo, "path": "base.bin", "local": str(tmp_path / "base.bin")})
    before = store_bytes(trove)
    changed = len(base) // 10
    tuned = variant(base, changed)
    (tmp_path / "tuned.bin").write_bytes(tuned)
    # A client that never saw the base (fresh HF_HOME, so a fresh Xet cache): what it does not
    # upload, it learned from the server's global-dedup answers.
    cold = make_client(trove, tmp_path / "cold-client")
    cold.py(UPLOAD, xet=True, args={"repo": repo, "path": "tuned.bin", "local": str(tmp_path / "tuned.bin")})
    growth = store_bytes(trove) - before
    print(f"cold-cache Xet upload after LFS: store growth {growth} B for {changed} changed bytes "
          f"({growth / changed:.4f}x)")
    # The changed bytes and one chunk per edit boundary (two edges).
    assert growth <= 1.07 * changed + 2 * CHUNK_MAX, (growth, changed)
    check_downloads(trove, tmp_path, repo, "tuned.bin", tuned)

    # Another owner asking about the same chunks learns nothing: its upload of a prefix of
    # the base is stored whole.
    bobs = hub.create_repo("cold-dedup-bob", namespace=bob.name, token=bob.token)
    prefix = base[: 8 << 20]
    (tmp_path / "prefix.bin").write_bytes(prefix)
    before = store_bytes(trove)
    make_client(trove, tmp_path / "bob-client").py(
        UPLOAD, token=bob.token, xet=True,
        args={"repo": bobs, "path": "prefix.bin", "local": str(tmp_path / "prefix.bin")})
    growth = store_bytes(trove) - before
    assert growth >= len(prefix), (growth, len(prefix))
