"""Error contract at the HTTP level: status codes, X-Error-Code, and that rejected writes change nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from conftest import b64, make_client, ndjson, unique

HEADER = ndjson("header", summary="e2e", description="")


def _err(r, status: int, code: str | None = None) -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}"
    if code is not None:
        assert r.headers.get("x-error-code") == code, dict(r.headers)
    assert r.headers.get("x-request-id"), "every response carries X-Request-Id"


@pytest.fixture
def repo(hub):
    name = hub.create_repo("errors")
    hub.commit_files(name, {"file.txt": b"content\n"})
    return name


def test_unknown_repo_revision_and_file(hub, repo):
    missing = f"admin/{unique('missing')}"
    token = hub.token()
    _err(hub.http.get(f"/api/models/{missing}"), 401, "RepoNotFound")
    _err(hub.http.get(f"/api/models/{missing}", headers=hub.auth(token)), 404, "RepoNotFound")
    _err(hub.http.head(f"/{missing}/resolve/main/file.txt"), 401, "RepoNotFound")
    _err(hub.http.head(f"/{missing}/resolve/main/file.txt", headers=hub.auth(token)), 404, "RepoNotFound")
    _err(hub.http.get(f"/api/datasets/{repo}", headers=hub.auth(token)), 404, "RepoNotFound")

    _err(hub.http.get(f"/api/models/{repo}/revision/no-such-branch"), 404, "RevisionNotFound")
    _err(hub.http.head(f"/{repo}/resolve/no-such-branch/file.txt"), 404, "RevisionNotFound")
    _err(hub.http.get(f"/api/models/{repo}/tree/{'0' * 40}"), 404, "RevisionNotFound")

    head = hub.head_sha(repo)
    r = hub.http.head(f"/{repo}/resolve/main/nope.txt")
    _err(r, 404, "EntryNotFound")
    assert r.headers.get("x-repo-commit") == head
    _err(hub.http.get(f"/api/models/{repo}/tree/main/no%2Fsuch"), 404, "EntryNotFound")

    ok = hub.http.head(f"/{repo}/resolve/main/file.txt")
    assert ok.status_code == 200
    assert ok.headers["x-repo-commit"] == head
    assert int(ok.headers["content-length"]) == len(b"content\n")
    assert ok.headers.get("x-linked-etag", ok.headers.get("etag", "")).startswith('"')
    ranged = hub.http.get(f"/{repo}/resolve/main/file.txt", headers={"range": "bytes=2-4"})
    assert ranged.status_code == 206 and ranged.content == b"nte"


def test_writes_need_a_write_token(hub, repo, admin_read_token):
    before = hub.head_sha(repo)
    body = HEADER + "\n" + ndjson("file", path="x.txt", content=b64(b"x"), encoding="base64") + "\n"
    _err(hub.commit_raw(repo, body, token=None), 401)
    _err(hub.commit_raw(repo, body, token=admin_read_token), 403)
    r = hub.http.post("/api/repos/create", json={"name": unique("anon"), "organization": "admin"})
    _err(r, 401)
    r = hub.http.post("/api/repos/create", json={"name": unique("readonly"), "organization": "admin"},
                      headers=hub.auth(admin_read_token))
    _err(r, 403)
    r = hub.http.request("DELETE", "/api/repos/delete", headers=hub.auth(admin_read_token),
                         json={"name": repo.split("/")[1], "organization": "admin"})
    _err(r, 403)
    assert hub.head_sha(repo) == before


@pytest.mark.parametrize("name", ["bad name", "a--b", "-lead", "trail.", "x.git", "a..b", "ü", "a" * 97],
                         ids=["space", "double-dash", "leading-dash", "trailing-dot", "dot-git", "dot-dot",
                              "non-ascii", "too-long"])
def test_invalid_repo_name_rejected(hub, name):
    r = hub.http.post("/api/repos/create", json={"name": name, "organization": "admin"},
                      headers=hub.auth(hub.token()))
    _err(r, 400)


@pytest.mark.parametrize("path", ["../x", "a/../../x", ".git/config", "sub/.git/hooks/x", "/abs", ""],
                         ids=["parent", "nested-parent", "dot-git", "nested-dot-git", "absolute", "empty"])
def test_commit_rejects_bad_paths(hub, repo, path):
    before = hub.head_sha(repo)
    body = HEADER + "\n" + ndjson("file", path=path, content=b64(b"evil"), encoding="base64") + "\n"
    _err(hub.commit_raw(repo, body), 422)  # invalid or escaping paths: 422, as on the Hub
    assert hub.head_sha(repo) == before


@pytest.mark.parametrize("body", [
    "this is not json\n",
    HEADER + "\n{not json}\n",
    ndjson("file", path="a.txt", content=b64(b"a"), encoding="base64") + "\n",  # no header first
    HEADER + "\n" + ndjson("copyFile", path="a.txt") + "\n",  # unknown key
    HEADER + "\n" + ndjson("file", path="a.txt", content="%%% not base64 %%%", encoding="base64") + "\n",
    HEADER + "\n" + ndjson("file", content=b64(b"a"), encoding="base64") + "\n",  # no path
    ndjson("header", summary="", description="") + "\n",  # empty summary
    "",
], ids=["garbage", "bad-line", "no-header", "unknown-key", "bad-base64", "no-path", "empty-summary",
        "empty-body"])
def test_commit_rejects_malformed_ndjson(hub, repo, body):
    before = hub.head_sha(repo)
    _err(hub.commit_raw(repo, body), 400)
    assert hub.head_sha(repo) == before


def test_lfs_file_never_uploaded_is_rejected(hub, repo):
    before = hub.head_sha(repo)
    oid = hashlib.sha256(os.urandom(64)).hexdigest()
    body = HEADER + "\n" + ndjson("lfsFile", path="ghost.bin", algo="sha256", oid=oid, size=1234) + "\n"
    r = hub.commit_raw(repo, body)
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert hub.head_sha(repo) == before


def _lfs_batch(hub, repo: str, oid: str, size: int, token) -> "object":
    return hub.http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}],
              "hash_algo": "sha256", "ref": {"name": "main"}},
        headers={**hub.auth(token), "accept": "application/vnd.git-lfs+json",
                 "content-type": "application/vnd.git-lfs+json"},
    )


def test_lfs_upload_with_wrong_bytes_is_rejected(hub, repo):
    claimed = os.urandom(4096)
    oid = hashlib.sha256(claimed).hexdigest()
    r = _lfs_batch(hub, repo, oid, len(claimed), hub.token())
    assert r.status_code == 200, r.text
    obj = r.json()["objects"][0]
    upload = obj["actions"]["upload"]
    href = upload["href"]
    assert href.startswith(("http://", "https://")) or href.startswith("/")
    # The client sends no Authorization and no action headers on the PUT.
    put = hub.http.put(href, content=os.urandom(4096))
    verify_status = None
    if 200 <= put.status_code < 300 and "verify" in obj["actions"]:
        verify = hub.http.post(obj["actions"]["verify"]["href"], headers=hub.auth(hub.token()),
                               json={"oid": oid, "size": len(claimed)})
        verify_status = verify.status_code
    assert 400 <= put.status_code < 500 or (verify_status is not None and 400 <= verify_status < 500), \
        f"PUT {put.status_code}, verify {verify_status}: mismatching bytes must be refused"
    assert put.status_code < 500 and (verify_status is None or verify_status < 500)

    before = hub.head_sha(repo)
    body = HEADER + "\n" + ndjson("lfsFile", path="bad.bin", algo="sha256", oid=oid, size=len(claimed)) + "\n"
    r = hub.commit_raw(repo, body)
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert hub.head_sha(repo) == before


def test_lfs_upload_roundtrip_raw(hub, repo):
    """The same flow with correct bytes works, and the object is served at the resolve URL."""
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    obj = _lfs_batch(hub, repo, oid, len(data), hub.token()).json()["objects"][0]
    put = hub.http.put(obj["actions"]["upload"]["href"], content=data)
    assert 200 <= put.status_code < 300, put.text
    if "verify" in obj["actions"]:
        v = hub.http.post(obj["actions"]["verify"]["href"], headers=hub.auth(hub.token()),
                          json={"oid": oid, "size": len(data)})
        assert 200 <= v.status_code < 300, v.text
    again = _lfs_batch(hub, repo, oid, len(data), hub.token()).json()["objects"][0]
    assert "actions" not in again, "an already stored object needs no upload"
    body = HEADER + "\n" + ndjson("lfsFile", path="good.bin", algo="sha256", oid=oid, size=len(data)) + "\n"
    r = hub.commit_raw(repo, body)
    assert r.status_code == 200, r.text
    got = hub.http.get(f"/{repo}/resolve/main/good.bin")
    assert got.status_code == 200 and got.content == data
    assert got.headers["x-repo-commit"] == r.json()["commitOid"]


def test_commit_body_over_cap_is_413(trove_small_cap, make_hub, tmp_path):
    hub = make_hub(trove_small_cap)
    repo = hub.create_repo("cap")
    hub.commit_files(repo, {"small.txt": b"fits"})
    before = hub.head_sha(repo)
    big = b"0123456789abcdef\n" * 90_000  # 1.5 MB of text -> ~2 MB base64 line
    body = HEADER + "\n" + ndjson("file", path="big.txt", content=b64(big), encoding="base64") + "\n"
    r = hub.commit_raw(repo, body)
    _err(r, 413)
    assert hub.head_sha(repo) == before

    # the real client (inline regular file) gets the same answer
    client = make_client(trove_small_cap, tmp_path)
    local = tmp_path / "big.txt"
    local.write_bytes(big)
    run = client.py("""emit(attempt(api.upload_file, path_or_fileobj=ARGS["f"], path_in_repo="big.txt",
                                   repo_id=ARGS["repo"]))""", args={"f": str(local), "repo": repo})
    assert run.result["ok"] is False and run.result["status"] == 413, run.result
    assert hub.head_sha(repo) == before
    # a commit under the cap still works on that server
    hub.commit_files(repo, {"still-ok.txt": b"ok"})


def test_private_repo_is_invisible(hub, bob):
    repo = hub.create_repo("secret", private=True)
    hub.commit_files(repo, {"secret.txt": b"top secret"})
    oid = hashlib.sha256(b"whatever").hexdigest()
    probes = [
        ("GET", f"/api/models/{repo}", None),
        ("GET", f"/api/models/{repo}/revision/main", None),
        ("GET", f"/api/models/{repo}/tree/main?recursive=true&expand=false", None),
        ("GET", f"/api/models/{repo}/refs", None),
        ("GET", f"/api/models/{repo}/commits/main", None),
        ("HEAD", f"/{repo}/resolve/main/secret.txt", None),
        ("GET", f"/{repo}/resolve/main/secret.txt", None),
        ("POST", f"/{repo}.git/info/lfs/objects/batch",
         {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 8}],
          "hash_algo": "sha256"}),
    ]
    for method, path, body in probes:
        for token, status in ((None, 401), (bob.token, 404)):
            r = hub.http.request(method, path, json=body, headers=hub.auth(token))
            _err(r, status, "RepoNotFound")
            assert b"top secret" not in r.content
        r = hub.http.request(method, path, json=body, headers=hub.auth(hub.token()))
        assert r.status_code == 200, f"owner {method} {path}: {r.status_code} {r.text[:200]}"
    # paths-info is form-encoded
    for token, status in ((None, 401), (bob.token, 404)):
        r = hub.http.post(f"/api/models/{repo}/paths-info/main", data={"paths": ["secret.txt"]},
                          headers=hub.auth(token))
        _err(r, status, "RepoNotFound")


def test_private_repo_with_real_client(hub, bob, tmp_path, trove):
    repo = hub.create_repo("secret-client", private=True)
    hub.commit_files(repo, {"secret.txt": b"top secret"})
    client = make_client(trove, tmp_path)
    code = """
emit({"exists": api.repo_exists(ARGS["repo"]),
      "file_exists": api.file_exists(ARGS["repo"], "secret.txt"),
      "info": attempt(api.model_info, ARGS["repo"]),
      "download": attempt(api.hf_hub_download, ARGS["repo"], "secret.txt")})
"""
    for token in (None, bob.token):
        r = client.py(code, token=token, args={"repo": repo}).result
        assert r["exists"] is False and r["file_exists"] is False
        assert "RepositoryNotFoundError" in r["info"]["mro"], r["info"]
        assert "RepositoryNotFoundError" in r["download"]["mro"], r["download"]
    owner = client.py(code, args={"repo": repo}).result
    assert owner["exists"] is True and owner["file_exists"] is True
    assert owner["info"]["ok"] is True and owner["download"]["ok"] is True


def test_datetimes_end_in_z(hub, repo):
    info = hub.info(repo).json()
    for key in ("lastModified", "createdAt"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", info[key]), (key, info[key])
    commits = hub.http.get(f"/api/models/{repo}/commits/main").json()
    assert all(c["date"].endswith("Z") for c in commits), json.dumps(commits)[:500]


def test_a_refused_upload_closes_its_connection_and_the_pool_recovers(trove, repo):
    """A refusal sent before the body is read ends the connection, and says so: a pooled
    client then opens a new one instead of writing into a closed socket."""
    from conftest import httpx

    body = (HEADER + "\n" + ndjson("file", path="big.txt", content=b64(os.urandom(300_000)),
                                   encoding="base64") + "\n").encode()
    with httpx.Client(base_url=trove.url, timeout=60) as pooled:
        for _ in range(5):
            r = pooled.post(f"/api/models/{repo}/commit/main", content=body,
                            headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 401 and r.headers.get("connection") == "close", dict(r.headers)
            ok = pooled.get(f"/api/models/{repo}")
            assert ok.status_code == 200
