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
