"""Downloads answered again from what the server kept of the same request (the answer cache:
same method, target, headers and credential): the same bytes and headers as the whole way, each
answer with its own request id and access line, and never an answer the state it rests on has
moved from — a commit, a revoked or expired token, the repository made private, another caller,
a large file deleted permanently. The cache is on by default with SQLite; with PostgreSQL it is
off unless configured (`[auth] token_cache_ms`), where these tests check the same answers the
whole way."""

from __future__ import annotations

import hashlib
import os
import re
import time

from conftest import unique

MARKERS = ("date", "x-request-id")


def reused(server) -> int:
    """`/metrics`' count of answers given again."""
    import httpx
    r = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {server.admin_token}"},
                  timeout=30)
    assert r.status_code == 200, r.text[:300]
    m = re.search(r"^trove_download_answers_reused_total (\d+)$", r.text, re.M)
    assert m, r.text[-600:]
    return int(m.group(1))


def cache_on(server) -> bool:
    return not server.database_url


def same(r) -> dict[str, str]:
    """An answer's headers but those made for each response."""
    return {k: v for k, v in r.headers.items() if k not in MARKERS}


def test_an_answer_given_again_is_the_same_but_for_its_id_and_date(hub, trove):
    repo = hub.create_repo("again")
    data = os.urandom(5000)
    hub.commit_files(repo, {"w.txt": data})
    auth = hub.auth(hub.token())
    url = f"/{repo}/resolve/main/w.txt"
    before = reused(trove)
    mine = unique("mine")
    answers = [hub.http.get(url, headers=auth),
               hub.http.get(url, headers={**auth, "x-request-id": mine}),
               hub.http.get(url, headers=auth)]
    for r in answers:
        assert (r.status_code, r.content) == (200, data), r.headers
    assert same(answers[0]) == same(answers[1]) == same(answers[2])
    assert answers[1].headers["x-request-id"] == mine
    assert answers[0].headers["x-request-id"] != answers[2].headers["x-request-id"]
    for _ in range(2):
        h = hub.http.head(url, headers=auth)
        assert (h.status_code, h.headers["content-length"], h.content) == (200, "5000", b"")
        r = hub.http.get(url, headers={**auth, "range": "bytes=10-19"})
        assert (r.status_code, r.content, r.headers["content-range"]) == \
            (206, data[10:20], "bytes 10-19/5000")
        r = hub.http.get(url, headers={**auth, "range": "bytes=-5"})
        assert (r.status_code, r.content) == (206, data[-5:])
        r = hub.http.get(url, headers={**auth, "if-none-match": answers[0].headers["etag"]})
        assert (r.status_code, r.content) == (304, b"")
        assert r.headers["etag"] == answers[0].headers["etag"]
    if cache_on(trove):
        # The second and third GET, and the second HEAD, ranges and 304.
        assert reused(trove) - before >= 6

    # Each answer has its own access line, the one given again included.
    deadline = time.monotonic() + 10
    line = ""
    while time.monotonic() < deadline and not line:
        text = trove.log_path.read_text(errors="replace")
        line = next((l for l in text.splitlines() if "trove::access" in l and mine in l), "")
        time.sleep(0.1)
    assert "status=200" in line and "size_bytes=5000" in line and f"path=/{repo}/resolve/main/w.txt" in line, line
    assert 'user="admin"' in line and "complete=true" in line, line


def test_the_real_client_s_downloads_are_answered_again(client, hub, trove, tmp_path):
    """`hf_hub_download` asks HEAD then GET, each with a fresh trace id: the second download of
    a file is answered from what the first one left."""
    repo = hub.create_repo("again-client")
    data = os.urandom(3000)
    hub.commit_files(repo, {"w.txt": data})
    before = reused(trove)
    run = client.py("""
import hashlib
from huggingface_hub import hf_hub_download
digests = []
for _ in range(3):
    path = hf_hub_download(ARGS["repo"], "w.txt", force_download=True, cache_dir=ARGS["cache"])
    digests.append(sha256_file(path))
emit(digests)
""", args={"repo": repo, "cache": str(tmp_path / "cache")})
    assert run.result == [hashlib.sha256(data).hexdigest()] * 3, run.output
    if cache_on(trove):
        # The second and third downloads' HEAD and GET.
        assert reused(trove) - before >= 4


def test_an_answer_kept_never_outlives_what_it_rests_on(hub, trove):
    repo = hub.create_repo("kept")
    url = f"/{repo}/resolve/main/f.txt"
    admin = hub.auth(hub.token())

    def twice(headers: dict[str, str]) -> list[tuple[int, bytes]]:
        return [(r.status_code, r.content)
                for r in (hub.http.get(url, headers=headers) for _ in range(2))]

    hub.commit_files(repo, {"f.txt": b"one"})
    assert twice({}) == [(200, b"one")] * 2
    hub.commit_files(repo, {"f.txt": b"two"})
    assert twice({}) == [(200, b"two")] * 2

    # A reader's token, revoked through the admin CLI (another process).
    reader = unique("reader")
    trove.create_user(reader, email=f"{reader}@example.invalid")
    token = trove.create_token(reader, role="read", name="r1")
    assert twice(hub.auth(token)) == [(200, b"two")] * 2
    trove.admin_cli("token", "revoke", reader, "--name", "r1")
    assert hub.http.get(url, headers=hub.auth(token)).status_code == 401

    # Made private: anonymous callers and the reader (no member) no longer see it; its owner does.
    other = trove.create_token(reader, role="read", name="r2")
    assert twice(hub.auth(other)) == [(200, b"two")] * 2
    assert twice(admin) == [(200, b"two")] * 2
    r = hub.http.put(f"/api/models/{repo}/settings", json={"private": True}, headers=admin)
    assert r.status_code == 200, r.text
    for headers, status in (({}, 401), (hub.auth(other), 404)):
        r = hub.http.get(url, headers=headers)
        assert (r.status_code, r.headers.get("x-error-code")) == (status, "RepoNotFound"), headers
    assert twice(admin) == [(200, b"two")] * 2

    # A token that expires: answered until it does, refused from then on.
    made = time.monotonic()
    brief = trove.admin_cli("token", "create", "admin", "--name", unique("brief"), "--role", "read",
                            "--expires-in", "3s").strip()
    assert twice(hub.auth(brief)) == [(200, b"two")] * 2
    time.sleep(max(0.0, made + 4.0 - time.monotonic()))
    assert hub.http.get(url, headers=hub.auth(brief)).status_code == 401

    # The file gone from main.
    r = hub.http.post(f"/api/models/{repo}/commit/main", headers=admin,
                      content=('{"key":"header","value":{"summary":"rm","description":""}}\n'
                               '{"key":"deletedFile","value":{"path":"f.txt"}}\n').encode())
    assert r.status_code == 200, r.text
    r = hub.http.get(url, headers=admin)
    assert (r.status_code, r.headers.get("x-error-code")) == (404, "EntryNotFound")


def test_a_small_large_file_given_again_until_deleted_permanently(client, hub, trove, tmp_path):
    repo = hub.create_repo("kept-lfs")
    data = os.urandom(20_000)
    (tmp_path / "w.bin").write_bytes(data)
    client.py("""
api.upload_file(path_or_fileobj=ARGS["path"], path_in_repo="w.bin", repo_id=ARGS["repo"])
emit(True)
""", args={"path": str(tmp_path / "w.bin"), "repo": repo})
    auth = hub.auth(hub.token())
    url = f"/{repo}/resolve/main/w.bin"
    answers = [hub.http.get(url, headers=auth) for _ in range(3)]
    for r in answers:
        assert (r.status_code, r.content) == (200, data)
    assert same(answers[0]) == same(answers[2])
    assert answers[0].headers["x-linked-size"] == "20000"
    ranged = [hub.http.get(url, headers={**auth, "range": "bytes=100-"}) for _ in range(2)]
    assert [(r.status_code, r.content) for r in ranged] == [(206, data[100:])] * 2

    client.py("""
files = [f for f in api.list_lfs_files(ARGS["repo"]) if f.filename == "w.bin"]
assert len(files) == 1, files
api.permanently_delete_lfs_files(ARGS["repo"], files)
emit(True)
""", args={"repo": repo})
    for headers in (auth, {**auth, "range": "bytes=100-"}):
        r = hub.http.get(url, headers=headers)
        assert (r.status_code, r.headers.get("x-error-code")) == (404, "EntryNotFound"), r.headers
        assert "deleted permanently" in r.headers.get("x-error-message", "")


def test_a_counted_download_counts_every_time(hub, trove):
    repo = hub.create_repo("counted")
    hub.commit_files(repo, {"config.json": b"{}"})
    before = hub.info(repo).json()["downloads"]
    for _ in range(3):
        r = hub.http.get(f"/{repo}/resolve/main/config.json")
        assert (r.status_code, r.content) == (200, b"{}")
    # A HEAD does not count, given again or not.
    for _ in range(2):
        assert hub.http.head(f"/{repo}/resolve/main/config.json").status_code == 200
    assert hub.info(repo).json()["downloads"] == before + 3
