"""Server lifecycle: SIGTERM lets an upload in flight finish, refuses new work, exits 0, and
a restart on the same data dir finds everything it acknowledged and no leftovers."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import Hub, TroveServer, httpx, ndjson


def _upload_href(hub: Hub, repo: str, oid: str, size: int) -> dict:
    r = hub.http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
        headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"},
    )
    assert r.status_code == 200, r.text
    return r.json()["objects"][0]["actions"]


def test_sigterm_finishes_the_upload_in_flight_then_exits(tmp_path):
    server = TroveServer("trove-lifecycle", tmp_path / "srv")
    server.start()
    hub = Hub(server)
    try:
        repo = hub.create_repo("lifecycle")
        parts = [os.urandom(1 << 20) for _ in range(8)]
        data = b"".join(parts)
        oid = hashlib.sha256(data).hexdigest()
        actions = _upload_href(hub, repo, oid, len(data))

        started = threading.Event()
        result: dict = {}

        def slow_body():
            for i, part in enumerate(parts):
                if i == 1:
                    started.set()
                time.sleep(0.25)
                yield part

        def upload():
            try:
                with httpx.Client(timeout=60) as c:
                    r = c.put(actions["upload"]["href"], content=slow_body(),
                              headers={"content-length": str(len(data))})
                    result["status"] = r.status_code
            except Exception as e:  # noqa: BLE001 - recorded for the assertion below
                result["error"] = repr(e)

        t = threading.Thread(target=upload)
        t.start()
        assert started.wait(30)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # New connections are no longer accepted ...
        refused = False
        try:
            httpx.get(f"{server.url}/healthz", timeout=2)
        except httpx.TransportError:
            refused = True
        assert refused, "the server still accepts new connections after SIGTERM"
        # ... but the upload in flight completes.
        t.join(60)
        assert result.get("status") == 200, result
        assert server.proc.wait(timeout=30) == 0
    finally:
        hub.close()
        server.stop()

    # A restart on the same data dir has the object and nothing half-written.
    again = TroveServer("trove-lifecycle-2", tmp_path / "srv")
    again.start()
    hub = Hub(again)
    try:
        tmp = again.data_dir / "lfs" / "tmp"
        assert not any(tmp.iterdir()), list(tmp.iterdir())
        body = "\n".join([ndjson("header", summary="after restart", description=""),
                          ndjson("lfsFile", path="big.bin", algo="sha256", oid=oid, size=len(data))]) + "\n"
        r = hub.commit_raw(repo, body)
        assert r.status_code == 200, r.text
        got = hub.http.get(f"/{repo}/resolve/main/big.bin")
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == oid
    finally:
        hub.close()
        again.stop()


def test_admin_cli_refuses_a_directory_without_a_hub_and_new_data_dirs_are_private(tmp_path):
    """Run in the wrong place, the admin CLI says so instead of creating an empty hub; the
    data dir a first start creates is readable by its owner only."""
    import stat
    import subprocess

    from conftest import clean_env, trove_binary

    empty = tmp_path / "not-a-hub"
    p = subprocess.run([str(trove_binary()), "user", "create", "carol", "--data-dir", str(empty)],
                       capture_output=True, text=True, timeout=60, env=clean_env(), stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "no Trove database" in p.stderr and "--data-dir" in p.stderr, p.stderr
    assert "TROVE_DATABASE" in p.stderr, "a PostgreSQL hub's operator learns what is missing"
    assert not empty.exists(), "nothing may be created"

    # A data dir the server creates on its first start is private to its owner.
    nested = tmp_path / "nested" / "data"
    p = subprocess.Popen([str(trove_binary()), "serve", "--data-dir", str(nested), "--listen", "127.0.0.1:0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
                         stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (nested / "admin-token").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (nested / "admin-token").exists()
        assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def _repo_id(server: TroveServer, repo: str) -> int:
    """The database id of `namespace/name` (read while the server is stopped)."""
    import sqlite3
    namespace, name = repo.split("/")
    with sqlite3.connect(server.data_dir / "trove.db") as db:
        row = db.execute("SELECT id FROM repos WHERE namespace = ? AND name = ?",
                         (namespace, name)).fetchone()
    assert row, repo
    return row[0]


def _answers(hub: Hub, repo: str) -> None:
    for path in (f"/api/models/{repo}", f"/api/models/{repo}/tree/main",
                 f"/api/models/{repo}/refs", f"/api/models/{repo}/commits/main"):
        r = hub.http.get(path, headers=hub.auth(hub.token()))
        assert r.status_code == 200, (path, r.status_code, r.text[:300])


def test_a_repo_whose_git_folder_vanished_works_again_after_a_restart(tmp_path):
    import shutil
    server = TroveServer("trove-vanished", tmp_path / "srv")
    server.start()
    hub = Hub(server)
    repo = hub.create_repo("vanished")
    hub.close()
    server.stop()
    shutil.rmtree(server.data_dir / "repos" / f"{_repo_id(server, repo)}.git")

    again = TroveServer("trove-vanished-2", tmp_path / "srv")
    again.start()
    hub = Hub(again)
    try:
        _answers(hub, repo)
        hub.commit_files(repo, {"after.txt": b"after"})
        assert hub.http.get(f"/{repo}/resolve/main/after.txt").content == b"after"
        # Its name is still taken, and a new repo next to it is created normally.
        name = repo.split("/")[1]
        r = hub.http.post("/api/repos/create", json={"name": name, "type": "model"},
                          headers=hub.auth(hub.token()))
        assert r.status_code == 409, r.text
        _answers(hub, hub.create_repo("next"))
        assert "git folder missing" in again.log_path.read_text()
    finally:
        hub.close()
        again.stop()


def _killed_with_locks(tmp_path, name: str) -> tuple[TroveServer, list[str]]:
    """A hub with repositories, killed with SIGKILL, with git lock files in each as a write
    cut short would leave them."""
    server = TroveServer(name, tmp_path / "srv")
    server.start()
    hub = Hub(server)
    repos = [hub.create_repo(f"locked-{i}") for i in range(3)]
    hub.commit_files(repos[0], {"a.txt": b"a"})
    hub.close()
    server.proc.kill()
    server.proc.wait(timeout=15)
    server.stop()
    for repo in repos:
        git_dir = server.data_dir / "repos" / f"{_repo_id(server, repo)}.git"
        for lock in ("refs/heads/main.lock", "config.lock", "packed-refs.lock"):
            (git_dir / lock).write_bytes(b"")
    return server, repos


def _wait_for_log(server: TroveServer, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in server.log_path.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in the log\n{server.log_tail()}"
        time.sleep(0.1)


def test_git_lock_files_left_by_a_dead_process_do_not_block_commits(tmp_path):
    server, repos = _killed_with_locks(tmp_path, "trove-locks")
    again = TroveServer("trove-locks-2", tmp_path / "srv")
    again.start()
    hub = Hub(again)
    try:
        # Whether the background check or the commit itself got there first.
        started = time.monotonic()
        hub.commit_files(repos[0], {"b.txt": b"b"})
        assert time.monotonic() - started < 1.5, "the commit waited for a stale lock"
        _answers(hub, repos[0])
        _wait_for_log(again, "repositories checked")
        for repo in repos:
            git_dir = server.data_dir / "repos" / f"{_repo_id(server, repo)}.git"
            assert not (git_dir / "refs/heads/main.lock").exists(), repo
            assert not (git_dir / "config.lock").exists(), repo
    finally:
        hub.close()
        again.stop()
    # Checked once: after this clean stop, the next start has nothing to check.
    third = TroveServer("trove-locks-3", tmp_path / "srv")
    third.start()
    try:
        _wait_for_log(third, "every process before this one stopped cleanly")
    finally:
        third.stop()


def test_a_clean_stop_is_not_followed_by_a_check_and_a_kill_is(tmp_path):
    server = TroveServer("trove-clean", tmp_path / "srv")
    server.start()
    hub = Hub(server)
    repo = hub.create_repo("kept")
    hub.commit_files(repo, {"a.txt": b"a"})
    hub.close()
    server.stop()
    running = server.data_dir / "repos" / ".running"
    assert list(running.iterdir()) == [], "a clean stop leaves its marker behind"

    again = TroveServer("trove-clean-2", tmp_path / "srv")
    again.start()
    try:
        _wait_for_log(again, "every process before this one stopped cleanly")
        assert "repositories checked" not in again.log_path.read_text()
        assert len(list(running.iterdir())) == 1
        hub = Hub(again)
        _answers(hub, repo)
        hub.close()
    finally:
        again.proc.kill()
        again.proc.wait(timeout=15)
        again.stop()
    # Killed: its marker stays, and the next start checks every repository.
    assert len(list(running.iterdir())) == 1
    third = TroveServer("trove-clean-3", tmp_path / "srv")
    third.start()
    try:
        _wait_for_log(third, "repositories checked")
        hub = Hub(third)
        _answers(hub, repo)
        hub.close()
    finally:
        third.stop()
    assert list(running.iterdir()) == []


def test_readyz_says_whether_the_store_takes_writes(tmp_path):
    """A load balancer's readiness check: ready while the database answers and the store
    takes writes; 503 naming the store (and no other part) when its temp folder cannot be
    written, ready again once it can; liveness stays ok throughout."""
    server = TroveServer("trove-readyz", tmp_path / "srv")
    server.start()
    try:
        r = httpx.get(f"{server.url}/readyz", timeout=10)
        assert (r.status_code, r.text) == (200, "ready")
        tmp = server.data_dir / "lfs" / "tmp"
        aside = server.data_dir / "lfs" / "tmp-aside"
        tmp.rename(aside)
        tmp.write_bytes(b"not a folder")  # writes under tmp/ now fail, even as root
        try:
            r = httpx.get(f"{server.url}/readyz", timeout=10)
            assert r.status_code == 503, r.text
            assert r.text == "not ready: store"
            assert r.headers["retry-after"] == "5"
            assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        finally:
            tmp.unlink()
            aside.rename(tmp)
        r = httpx.get(f"{server.url}/readyz", timeout=10)
        assert (r.status_code, r.text) == (200, "ready")
        assert list(tmp.iterdir()) == [], "the probe leaves nothing behind"
    finally:
        server.stop()


def test_the_start_banner_names_the_token_file_only_where_it_is(tmp_path):
    """A node whose data dir holds no `admin-token` (another node, or the file removed) does
    not tell its operator to `cat` a file that is not there."""
    import subprocess

    from conftest import clean_env, trove_binary

    data = tmp_path / "data"

    def start_and_stop(log_name: str) -> str:
        log = tmp_path / log_name
        with open(log, "w") as out:
            p = subprocess.Popen([str(trove_binary()), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                                 stdout=out, stderr=subprocess.DEVNULL, env=clean_env(), stdin=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while "listening on" not in log.read_text() and time.monotonic() < deadline:
                    assert p.poll() is None, log.read_text()
                    time.sleep(0.1)
            finally:
                p.send_signal(signal.SIGTERM)
                assert p.wait(timeout=60) == 0
        return log.read_text()

    first = start_and_stop("first.log")
    token_file = data / "admin-token"
    assert f"HF_TOKEN=$(cat {os.path.abspath(token_file)})" in first, first
    token_file.unlink()
    second = start_and_stop("second.log")
    assert "listening on" in second, second
    assert "$(cat" not in second, second
    assert "HF_TOKEN=..." in second, second


FULL_DISK_MIB = 40


def test_a_full_disk_answers_507_keeps_nothing_and_the_hub_serves_on(tmp_path):
    """The data dir on a small filesystem that an upload fills: the upload gets 507 and a message
    saying the storage is full (not a bare 500), what it had written is removed, and the hub
    serves on: a smaller upload afterwards lands and reads back. Needs the right to mount a
    tmpfs (root in CI); skipped where that is refused."""
    base = tmp_path / "srv"
    data = base / "data"
    data.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_MIB}m,mode=0700", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    server = TroveServer("trove-full-disk", base)
    try:
        server.start()
        hub = Hub(server)
        repo = hub.create_repo("full-disk")
        free = shutil.disk_usage(data).free
        size = free + 8 * 1024 * 1024
        big = os.urandom(size)
        oid = hashlib.sha256(big).hexdigest()
        actions = _upload_href(hub, repo, oid, size)
        r = httpx.put(actions["upload"]["href"], content=big, timeout=120,
                      headers=actions["upload"].get("header", {}))
        del big
        assert r.status_code == 507, (r.status_code, r.headers.get("x-error-message"), r.text[:300])
        message = r.headers.get("x-error-message", "")
        assert "storage is full" in message and str(data) not in message, message
        # Nothing of it kept: the space is free again (within what the database may have grown).
        assert shutil.disk_usage(data).free >= free - 2 * 1024 * 1024, (shutil.disk_usage(data).free, free)
        r = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                          json={"operation": "download", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
                          headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
        assert r.status_code == 200 and "error" in r.json()["objects"][0], r.text[:300]

        small = os.urandom(1024 * 1024)
        small_oid = hashlib.sha256(small).hexdigest()
        actions = _upload_href(hub, repo, small_oid, len(small))
        r = httpx.put(actions["upload"]["href"], content=small, timeout=60, headers=actions["upload"].get("header", {}))
        assert r.status_code == 200, (r.status_code, r.headers.get("x-error-message"))
        r = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                          json={"operation": "download", "transfers": ["basic"],
                                "objects": [{"oid": small_oid, "size": len(small)}]},
                          headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
        got = hub.http.get(r.json()["objects"][0]["actions"]["download"]["href"])
        assert got.status_code == 200 and got.content == small
        hub.close()
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(data)], capture_output=True)
