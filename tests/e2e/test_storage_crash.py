"""kill -9 in the middle of the chunk store's own work: while a plain LFS upload is being cut
into chunks and packed into xorbs as it arrives (before it is verified and recorded), while
`trove gc` sweeps thousands of condemned xorbs, and while it writes a compacted xorb. After a restart nothing references what is
not there, `trove fsck` is clean, the next GC completes, and uploading again works."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import Hub, TroveServer, clean_env, make_client, sha256_bytes
from test_storage import UPLOAD, check_downloads
from test_storage_ops import DELETE_AND_SQUASH, xorbs_of

POLL_S = 0.005


def dangling(data_dir: Path) -> dict[str, int]:
    """References to rows that are not there (each must be 0)."""
    queries = {
        "chunk index → xorb": "SELECT COUNT(*) FROM xet_chunks c WHERE NOT EXISTS "
                              "(SELECT 1 FROM xet_xorbs x WHERE x.hash = c.xorb)",
        "file → xorb": "SELECT COUNT(*) FROM xet_file_xorbs f WHERE NOT EXISTS "
                       "(SELECT 1 FROM xet_xorbs x WHERE x.hash = f.xorb)",
        "repo link → object": "SELECT COUNT(*) FROM repo_lfs_objects l WHERE NOT EXISTS "
                              "(SELECT 1 FROM lfs_objects o WHERE o.sha256 = l.sha256)",
        "repo → xorb": "SELECT COUNT(*) FROM xet_repo_xorbs r WHERE NOT EXISTS "
                       "(SELECT 1 FROM xet_xorbs x WHERE x.hash = r.hash)",
        "uploader → xorb": "SELECT COUNT(*) FROM xet_user_xorbs u WHERE NOT EXISTS "
                           "(SELECT 1 FROM xet_xorbs x WHERE x.hash = u.hash)",
    }
    with sqlite3.connect(data_dir / "trove.db", timeout=30) as conn:
        found = {name: conn.execute(q).fetchone()[0] for name, q in queries.items()}
    recorded = recorded_xorbs(data_dir)
    on_disk = xorb_files(data_dir)
    found["recorded xorb without its file"] = len(recorded - on_disk)
    return found


def xet_hex(raw: bytes) -> str:
    """The Xet protocol's hex form of a hash (xorb file names): four little-endian u64 words."""
    return "".join(f"{int.from_bytes(raw[i:i + 8], 'little'):016x}" for i in range(0, 32, 8))


def recorded_xorbs(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "trove.db", timeout=30) as conn:
        return {xet_hex(bytes(h)) for (h,) in conn.execute("SELECT hash FROM xet_xorbs")}


def xorb_files(data_dir: Path) -> set[str]:
    root = data_dir / "lfs" / "xorbs"
    return {p.name for p in root.glob("*/*") if p.is_file()} if root.is_dir() else set()


def after_restart(server: TroveServer) -> None:
    """The checks every crash must pass once the server is back."""
    found = dangling(server.data_dir)
    assert all(v == 0 for v in found.values()), str(found)
    server.admin_cli("fsck")  # fails the test on a nonzero exit
    report = json.loads(server.admin_cli("gc", "--grace", "0s"))
    assert all(v == 0 for v in dangling(server.data_dir).values()), (report, dangling(server.data_dir))
    server.admin_cli("fsck")


def test_kill_9_while_an_lfs_upload_is_ingested(tmp_path):
    server = TroveServer("trove-ingest-crash", tmp_path / "srv")
    server.start()
    try:
        hub = Hub(server)
        repo = hub.create_repo("ingest-crash")
        hub.close()
        data = os.urandom(48 << 20)
        oid = sha256_bytes(data)
        local = tmp_path / "big.bin"
        local.write_bytes(data)
        client = make_client(server, tmp_path / "c1")
        upload = client.popen_py(UPLOAD, xet=False, args={"repo": repo, "path": "big.bin", "local": str(local)})
        # The body is packed into xorbs while it arrives: kill once a xorb is being written
        # in staging (the body not yet verified, nothing published or recorded).
        tmp = server.data_dir / "lfs" / "tmp"
        deadline = time.monotonic() + 300
        while (not any(tmp.glob("pack-*")) and time.monotonic() < deadline
               and upload.poll() is None):
            time.sleep(POLL_S)
        assert any(tmp.glob("pack-*")), "the upload never reached the packing stage"
        server.proc.kill()
        server.proc.wait(timeout=15)
        upload.kill()
        upload.communicate(timeout=30)
        server.stop()

        server = TroveServer("trove-ingest-crash-2", tmp_path / "srv")
        server.start()
        after_restart(server)
        whole = server.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        assert not whole.exists(), "a basic upload never lands as a whole-file object"
        # Uploading again works and reads back both ways.
        again = make_client(server, tmp_path / "c2")
        again.py(UPLOAD, xet=False, args={"repo": repo, "path": "big.bin", "local": str(local)})
        check_downloads(server, tmp_path, repo, "big.bin", data)
        server.admin_cli("fsck")
    finally:
        server.stop()


def test_kill_9_mid_gc_sweep_then_the_next_gc_completes(tmp_path):
    server = TroveServer("trove-gc-crash", tmp_path / "srv")
    server.start()
    try:
        hub = Hub(server)
        repo = hub.create_repo("gc-crash")
        hub.close()
        kept = os.urandom(2 << 20)
        (tmp_path / "kept.bin").write_bytes(kept)
        client = make_client(server, tmp_path / "c1")
        client.py(UPLOAD, xet=False, args={"repo": repo, "path": "kept.bin", "local": str(tmp_path / "kept.bin")})
        live = xorb_files(server.data_dir)
        # Thousands of condemned xorbs: what deleted repositories leave behind.
        server.admin_cli("bench-seed-storage", "--xorbs", "3000", "--chunks-per-xorb", "4",
                         "--chunk-bytes", "256", "--seed", "7")
        seeded = len(xorb_files(server.data_dir)) - len(live)
        assert seeded == 3000, seeded

        gc = subprocess.Popen([str(server.binary), "gc", "--grace", "0s", "--data-dir", str(server.data_dir)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=clean_env())
        deadline = time.monotonic() + 300
        while (len(xorb_files(server.data_dir)) > len(live) + seeded - 200
               and gc.poll() is None and time.monotonic() < deadline):
            time.sleep(0.05)
        gc.kill()
        server.proc.kill()
        assert gc.wait(timeout=15) == -9, "gc finished before it could be killed: seed more xorbs"
        server.proc.wait(timeout=15)
        left = len(xorb_files(server.data_dir)) - len(live)
        assert 0 < left < seeded, left
        server.stop()

        server = TroveServer("trove-gc-crash-2", tmp_path / "srv")
        server.start()
        after_restart(server)
        # The next run freed every condemned xorb, kept every live one.
        assert xorb_files(server.data_dir) == live
        trash = server.data_dir / "lfs" / "gc-trash"
        assert not trash.exists() or not any(p.is_file() for p in trash.rglob("*"))
        check_downloads(server, tmp_path, repo, "kept.bin", kept)
        # And uploads work: a new file, and the same one again.
        fresh = os.urandom(1 << 20)
        (tmp_path / "fresh.bin").write_bytes(fresh)
        client = make_client(server, tmp_path / "c2")
        client.py(UPLOAD, xet=False, args={"repo": repo, "path": "fresh.bin", "local": str(tmp_path / "fresh.bin")})
        client.py(UPLOAD, xet=True, args={"repo": repo, "path": "kept-again.bin", "local": str(tmp_path / "kept.bin")})
        check_downloads(server, tmp_path, repo, "fresh.bin", fresh)
        check_downloads(server, tmp_path, repo, "kept-again.bin", kept)
    finally:
        server.stop()


def test_kill_9_mid_compaction_then_the_next_gc_completes(tmp_path):
    server = TroveServer("trove-compact-crash", tmp_path / "srv")
    server.start()
    try:
        hub = Hub(server)
        repo = hub.create_repo("compact-crash")
        hub.close()
        # A large first version, and a second sharing its first 30% (LFS: the server packs
        # the second's new chunks and names the first's xorb for the shared ones).
        v1 = os.urandom(24 << 20)
        shared = int(len(v1) * 0.3)
        v2 = v1[:shared] + os.urandom(len(v1) - shared)
        client = make_client(server, tmp_path / "c1")
        for name, data in (("v1.bin", v1), ("v2.bin", v2)):
            (tmp_path / name).write_bytes(data)
            client.py(UPLOAD, xet=False, args={"repo": repo, "path": name, "local": str(tmp_path / name)})
        (old,) = xorbs_of(server, v1)
        assert old in xorbs_of(server, v2)
        client.py(DELETE_AND_SQUASH, args={"repo": repo, "path": "v1.bin"})

        gc = subprocess.Popen([str(server.binary), "gc", "--grace", "0s", "--data-dir", str(server.data_dir)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=clean_env())
        # Killed while the new xorb is being written (its staging file has bytes).
        deadline = time.monotonic() + 300
        lfs = server.data_dir / "lfs"
        while gc.poll() is None and time.monotonic() < deadline:
            if any(p.stat().st_size > (1 << 20) for p in lfs.rglob("pack-*") if p.is_file()):
                break
            time.sleep(POLL_S)
        gc.kill()
        server.proc.kill()
        assert gc.wait(timeout=15) == -9, "gc finished before it could be killed: use a larger file"
        server.proc.wait(timeout=15)
        assert old in xorbs_of(server, v2), "killed before the repointing transaction"
        server.stop()

        server = TroveServer("trove-compact-crash-2", tmp_path / "srv")
        server.start()
        check_downloads(server, tmp_path, repo, "v2.bin", v2)
        after_restart(server)
        # The next run compacted and freed: v2 no longer names the old xorb, which is gone.
        assert old not in xorbs_of(server, v2) and old not in xorb_files(server.data_dir)
        assert old not in recorded_xorbs(server.data_dir)
        check_downloads(server, tmp_path, repo, "v2.bin", v2)
    finally:
        server.stop()
