"""Server lifecycle: SIGTERM lets an upload in flight finish, refuses new work, exits 0, and
a restart on the same data dir finds everything it acknowledged and no leftovers."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

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
