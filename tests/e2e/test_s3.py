"""The S3 backend with a real S3 server (scripts/test.sh starts s3s-fs and runs this file in
its S3 pass with TROVE_E2E_S3_URL): a wrong storage configuration stops the start with a
clear error, and in redirect mode downloads go to presigned bucket URLs, only after Trove's
own access check. Skipped in the embedded mode."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import httpx

from conftest import Relay, TroveServer, clean_env, make_client, ndjson, sha256_bytes, trove_binary, unique
from test_database import closed_port
from test_storage import DOWNLOAD, UPLOAD

S3_URL = os.environ.get("TROVE_E2E_S3_URL", "")
pytestmark = pytest.mark.skipif(not S3_URL, reason="S3 mode only: scripts/test.sh runs it with an S3 server")


def with_query(url: str, **params: str) -> str:
    base, _, query = url.partition("?")
    pairs = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    pairs.update(params)
    return base + "?" + "&".join(f"{k}={v}" for k, v in pairs.items())


def serve_until_exit(tmp_path: Path, env_changes: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env.update(env_changes)
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(trove_binary()), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)


def s3_endpoint() -> tuple[str, int]:
    query = dict(p.split("=", 1) for p in S3_URL.partition("?")[2].split("&") if "=" in p)
    endpoint = urlsplit(query["endpoint"])
    return endpoint.hostname or "127.0.0.1", endpoint.port or 80


def start_through_relay(tmp_path: Path, name: str) -> tuple[Relay, TroveServer]:
    """A server on a prefix of its own whose bucket it reaches through a relay the test can
    freeze or close."""
    relay = Relay(s3_endpoint())
    storage = with_query(S3_URL.partition("?")[0].rstrip("/") + "/" + unique(name) + "?"
                         + S3_URL.partition("?")[2], endpoint=f"http://127.0.0.1:{relay.port}")
    server = TroveServer(f"trove-s3-{name}", tmp_path / "srv", {"TROVE_STORAGE": storage})
    server.start()
    return relay, server


def test_a_bucket_that_never_answers_stops_the_start_within_the_probe_bound(tmp_path):
    """An endpoint that accepts connections and never replies (a hung server or balancer):
    the start fails within the probe's bound (10 s) with a line that says so, not after the
    minutes a large object's request may take."""
    silent = Relay(None)
    try:
        base, _, _ = S3_URL.partition("?")
        storage = with_query(base.rstrip("/") + "/" + unique("silent") + "?" + S3_URL.partition("?")[2],
                             endpoint=f"http://127.0.0.1:{silent.port}")
        started = time.monotonic()
        p = serve_until_exit(tmp_path, {"TROVE_STORAGE": storage})
        took = time.monotonic() - started
    finally:
        silent.close()
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "listening on" not in out, out
    assert "no answer within 10 s" in out and "bucket, credentials and endpoint" in out, out
    assert took < 60, f"the start took {took:.0f} s to fail"
    assert "panicked" not in out, out


def test_readyz_says_503_within_its_bound_while_the_bucket_hangs(tmp_path):
    """A running node whose bucket stops answering: `/readyz` answers 503 naming the store
    within the probe's bound (the balancer's check must not hang), liveness stays ok, and it
    is ready again once the bucket answers."""
    relay, server = start_through_relay(tmp_path, "hang")
    try:
        r = httpx.get(f"{server.url}/readyz", timeout=30)
        assert (r.status_code, r.text) == (200, "ready")
        relay.flowing.clear()
        started = time.monotonic()
        r = httpx.get(f"{server.url}/readyz", timeout=60)
        took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.text == "not ready: store"
        assert took < 30, f"/readyz took {took:.0f} s"
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        relay.flowing.set()
        r = httpx.get(f"{server.url}/readyz", timeout=30)
        assert (r.status_code, r.text) == (200, "ready")
    finally:
        relay.flowing.set()
        server.stop()
        relay.close()


def test_an_upload_while_the_bucket_is_down_answers_503_and_keeps_nothing(tmp_path):
    """A running node whose S3 server goes away (connections reset, new ones refused): an LFS
    upload gets 503 with `Retry-After` and a message saying the storage is not answering (not a
    bare 500), and the object is not there for a download."""
    relay, server = start_through_relay(tmp_path, "down")
    try:
        auth = {"authorization": f"Bearer {server.admin_token}"}
        repo = "admin/" + unique("s3-down")
        r = httpx.post(f"{server.url}/api/repos/create", json={"type": "model", "name": repo.split("/")[1]},
                       headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        data = os.urandom(3 * 1024 * 1024)
        oid = sha256_bytes(data)
        lfs = {**auth, "accept": "application/vnd.git-lfs+json"}
        batch = {"transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
        r = httpx.post(f"{server.url}/{repo}.git/info/lfs/objects/batch", json={"operation": "upload", **batch},
                       headers=lfs, timeout=30)
        assert r.status_code == 200, r.text
        upload = r.json()["objects"][0]["actions"]["upload"]
        relay.close()
        r = httpx.put(upload["href"], content=data, headers=upload.get("header", {}), timeout=120)
        assert r.status_code == 503, (r.status_code, r.headers.get("x-error-message"), r.text[:300])
        assert r.headers.get("retry-after") == "5"
        assert "storage service is not answering" in r.headers.get("x-error-message", ""), r.headers
        r = httpx.post(f"{server.url}/{repo}.git/info/lfs/objects/batch", json={"operation": "download", **batch},
                       headers=lfs, timeout=30)
        assert r.status_code == 200 and "error" in r.json()["objects"][0], r.text[:300]
    finally:
        server.stop()
        relay.close()


@pytest.mark.parametrize("case", ["wrong secret", "missing bucket", "unreachable endpoint", "no credentials"])
def test_a_wrong_storage_configuration_stops_the_start(tmp_path, case):
    base, _, _ = S3_URL.partition("?")
    storage = base.rstrip("/") + "/" + unique("bad") + "?" + S3_URL.partition("?")[2]
    env = {"TROVE_STORAGE": storage}
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    if case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + unique("x")
        secret = env["AWS_SECRET_ACCESS_KEY"]
    elif case == "missing bucket":
        env["TROVE_STORAGE"] = "s3://no-such-bucket-here?" + S3_URL.partition("?")[2]
    elif case == "unreachable endpoint":
        env["TROVE_STORAGE"] = with_query(storage, endpoint=f"http://127.0.0.1:{closed_port()}")
    run_env = {**env}
    if case == "no credentials":
        # No AWS_* in the environment at all.
        full = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
        full.update(env)
        data = tmp_path / "data"
        data.mkdir()
        p = subprocess.run([str(trove_binary()), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=full)
    else:
        p = serve_until_exit(tmp_path, run_env)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "listening on" not in out, out
    if case == "no credentials":
        assert "AWS_ACCESS_KEY_ID" in out, out
    else:
        assert "object store" in out and "bucket, credentials and endpoint" in out, out
    assert secret not in out, "the secret must never be printed"
    assert "panicked" not in out, out


@pytest.fixture(scope="module")
def trove_redirect(tmp_path_factory):
    """A server whose downloads redirect to presigned bucket URLs."""
    base = tmp_path_factory.mktemp("trove-redirect")
    server = TroveServer("trove-redirect", base)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    (server.data_dir / "trove.toml").write_text("[storage]\nredirect_downloads = true\npresign_ttl_secs = 120\n")
    server.start()
    yield server
    server.stop()


def test_redirect_mode_hands_out_presigned_urls_after_the_access_check(trove_redirect, make_hub, tmp_path):
    hub = make_hub(trove_redirect)
    client = make_client(trove_redirect, tmp_path / "owner")
    repo = hub.create_repo("s3-redirect", private=True)
    data = os.urandom(3_000_000)
    local = tmp_path / "w.bin"
    local.write_bytes(data)
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "w.bin", "local": str(local)})
    sha = sha256_bytes(data)
    query = dict(p.split("=", 1) for p in S3_URL.partition("?")[2].split("&") if "=" in p)
    endpoint = urlsplit(query["endpoint"])

    # The owner's downloads give the same bytes, through hf_xet and through plain HTTP.
    for xet in (True, False):
        got = client.py(DOWNLOAD, xet=xet, args={"repo": repo, "path": "w.bin"}).result
        assert got == {"sha256": sha, "size": len(data)}, (xet, got)

    # Xet reconstruction: every fetch URL is a presigned URL of the bucket bound to its range.
    r = hub.http.get(f"/api/models/{repo}/xet-read-token/main", headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    cas = {"authorization": f"Bearer {r.json()['accessToken']}"}
    xet_hash = hub.http.get(f"/api/models/{repo}/tree/main", headers=hub.auth(hub.token())).json()
    xet_hash = next(e["xetHash"] for e in xet_hash if e["path"] == "w.bin")
    rec = hub.http.get(f"/xet/v2/reconstructions/{xet_hash}", headers=cas)
    assert rec.status_code == 200, rec.text
    fetched = 0
    for xorb, fetches in rec.json()["xorbs"].items():
        for f in fetches:
            url = urlsplit(f["url"])
            assert (url.hostname, url.port) == (endpoint.hostname, endpoint.port), f["url"]
            assert "X-Amz-Signature=" in f["url"] and "range" in f["url"].lower(), f["url"]
            b = f["ranges"][0]["bytes"]
            got = hub.http.get(f["url"], headers={"range": f"bytes={b['start']}-{b['end']}"})
            assert got.status_code == 206, got.text[:300]
            assert len(got.content) == b["end"] - b["start"] + 1
            fetched += 1
            # The same URL with another range is refused by the bucket.
            other = hub.http.get(f["url"], headers={"range": f"bytes=0-{b['end'] + 1}"})
            assert other.status_code == 403, other.status_code
    assert fetched >= 1

    # A file whose object stays whole in the bucket (an empty one: nothing to chunk) is
    # answered with a cross-origin 302 carrying the Hub's headers; the bytes come from there.
    empty = sha256_bytes(b"")
    batch = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                          json={"operation": "upload", "transfers": ["basic"],
                                "objects": [{"oid": empty, "size": 0}]},
                          headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
    assert batch.status_code == 200, batch.text
    actions = batch.json()["objects"][0].get("actions", {})
    if "upload" in actions:
        up = actions["upload"]
        r = hub.http.put(up["href"], content=b"", headers=up.get("header", {}))
        assert r.status_code == 200, r.text
    r = hub.commit_raw(repo, "\n".join([
        ndjson("header", summary="empty", description=""),
        ndjson("lfsFile", path="empty.bin", algo="sha256", oid=empty, size=0),
    ]) + "\n")
    assert r.status_code == 200, r.text
    for method in ("HEAD", "GET"):
        r = hub.http.request(method, f"/{repo}/resolve/main/empty.bin", headers=hub.auth(hub.token()))
        assert r.status_code == 302, (method, r.status_code, r.text[:300])
        assert r.headers["x-linked-size"] == "0" and r.headers["x-linked-etag"] == f'"{empty}"'
        assert r.headers["etag"] == f'"{empty}"' and len(r.headers["x-repo-commit"]) == 40
        location = urlsplit(r.headers["location"])
        assert (location.hostname, location.port) == (endpoint.hostname, endpoint.port), r.headers["location"]
        got = hub.http.get(r.headers["location"])
        assert got.status_code == 200 and got.content == b"", got.status_code
    batch = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                          json={"operation": "download", "transfers": ["basic"],
                                "objects": [{"oid": empty, "size": 0}]},
                          headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
    href = batch.json()["objects"][0]["actions"]["download"]["href"]
    assert urlsplit(href).netloc == endpoint.netloc, href
    assert hub.http.get(href).status_code == 200

    # An outsider learns nothing: no token, no file, no redirect.
    outsider = unique("eve")
    trove_redirect.create_user(outsider)
    eve = trove_redirect.create_token(outsider, role="read")
    r = hub.http.get(f"/api/models/{repo}/xet-read-token/main", headers=hub.auth(eve))
    assert r.status_code == 404, r.status_code
    for method, path in (("HEAD", "w.bin"), ("GET", "w.bin"), ("GET", "empty.bin"), ("HEAD", "empty.bin")):
        r = hub.http.request(method, f"/{repo}/resolve/main/{path}", headers=hub.auth(eve))
        assert r.status_code in (401, 404) and "location" not in r.headers, (method, r.status_code, r.headers)
    r = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                      json={"operation": "download", "transfers": ["basic"],
                            "objects": [{"oid": sha, "size": len(data)}]},
                      headers={**hub.auth(eve), "accept": "application/vnd.git-lfs+json"})
    assert r.status_code in (401, 403, 404), r.status_code
    assert endpoint.netloc not in r.text


def test_concurrent_lfs_uploads_past_the_memory_budget_pack_into_files_and_all_land(trove, hub, tmp_path):
    """A xorb an upload packs is built in memory while the node's budget (six 64 MiB xorbs)
    has room, else in a staging file: more uploads at once than the budget holds all land,
    read back equal, and leave no staging file."""
    uploads = []
    for i in range(5):
        repo = hub.create_repo(unique(f"s3-budget-{i}"))
        data = os.urandom(150 << 20)
        local = tmp_path / f"b{i}.bin"
        local.write_bytes(data)
        client = make_client(trove, tmp_path / f"c{i}")
        uploads.append((repo, data, client))
    tmp = trove.data_dir / "lfs" / "tmp"

    def watch(procs) -> set[str]:
        """The staging files of packed xorbs seen while `procs` run."""
        seen: set[str] = set()
        while any(p.poll() is None for p in procs):
            seen.update(p.name for p in tmp.glob("pack-*"))
            time.sleep(0.005)
        return seen

    # One upload alone: its three xorbs are packed in memory, no staging file.
    repo, data, client = uploads[0]
    alone = client.popen_py(UPLOAD, xet=False, args={"repo": repo, "path": "alone.bin", "local": str(tmp_path / "b0.bin")})
    assert not watch([alone]), "a lone upload's xorbs go through staging files"
    assert client.wait_py(alone).returncode == 0

    procs = [c.popen_py(UPLOAD, xet=False, args={"repo": r, "path": "b.bin", "local": str(tmp_path / f"b{i}.bin")})
             for i, (r, _, c) in enumerate(uploads)]
    staged_files = watch(procs)
    for (repo, data, client), proc in zip(uploads, procs):
        run = client.wait_py(proc)
        assert run.returncode == 0 and run.result and run.result.get("commit"), run
    assert staged_files, "five 150 MiB uploads at once never went past the memory budget"
    for repo, data, client in uploads:
        got = client.py(DOWNLOAD, args={"repo": repo, "path": "b.bin"}).result
        assert got == {"sha256": sha256_bytes(data), "size": len(data)}, repo
    assert not any(tmp.glob("pack-*")), "staging files left behind"
