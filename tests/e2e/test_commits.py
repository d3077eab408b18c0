"""Commit semantics: optimistic locking with parent_commit and concurrent writers."""

from __future__ import annotations

import time

import pytest

PARENT_COMMIT = """
from huggingface_hub import CommitOperationAdd
repo = ARGS["repo"]
old = api.model_info(repo).sha
current = api.upload_file(path_or_fileobj=b"moved on", path_in_repo="b.txt", repo_id=repo).oid
stale = attempt(api.create_commit, repo, [CommitOperationAdd("stale.txt", b"stale")],
                commit_message="stale", parent_commit=old)
after_stale = api.model_info(repo).sha
files_after_stale = sorted(api.list_repo_files(repo))
ok = api.create_commit(repo, [CommitOperationAdd("fresh.txt", b"fresh")], commit_message="fresh",
                       parent_commit=current)
emit({"old": old, "current": current, "stale": stale, "after_stale": after_stale,
      "files_after_stale": files_after_stale, "ok": ok.oid, "head": api.model_info(repo).sha,
      "files": sorted(api.list_repo_files(repo))})
"""


def test_create_commit_parent_commit_lock(client, hub):
    repo = hub.create_repo("parent")
    hub.commit_files(repo, {"a.txt": b"a"})
    r = client.py(PARENT_COMMIT, args={"repo": repo}).result
    assert r["stale"]["ok"] is False
    assert r["stale"]["status"] == 412, r["stale"]
    assert r["after_stale"] == r["current"], "a rejected commit must leave the branch unchanged"
    assert "stale.txt" not in r["files_after_stale"]
    assert r["ok"] == r["head"] != r["current"]
    assert r["files"] == [".gitattributes", "a.txt", "b.txt", "fresh.txt"]


WRITER = """
import time
from huggingface_hub import CommitOperationAdd
repo, who = ARGS["repo"], ARGS["who"]
time.sleep(max(0.0, ARGS["start_at"] - time.time()))  # line both writers up
done, failed = [], []
for i in range(ARGS["commits"]):
    path = f"{who}/file-{i:02d}.txt"
    r = attempt(lambda: api.create_commit(repo, [CommitOperationAdd(path, f"{who} {i}".encode())],
                                          commit_message=f"{who} commit {i}").oid)
    if r["ok"]:
        done.append({"path": path, "oid": r["value"]})
    else:
        failed.append(r)
emit({"done": done, "failed": failed})
"""

COMMITS = 8


@pytest.mark.slow
def test_concurrent_commits_lose_nothing(client, hub):
    repo = hub.create_repo("concurrent")
    start_at = time.time() + 4  # both interpreters have imported the client by then
    procs = [client.popen_py(WRITER, args={"repo": repo, "who": who, "commits": COMMITS,
                                           "start_at": start_at})
             for who in ("alpha", "beta")]
    runs = [client.wait_py(p) for p in procs]
    for run in runs:
        assert run.returncode == 0 and run.result is not None, run.output

    done = [d for run in runs for d in run.result["done"]]
    failed = [f for run in runs for f in run.result["failed"]]
    for f in failed:
        assert f["status"] in (409, 412), f"a concurrent commit failed uncleanly: {f}"
    for run in runs:
        assert run.result["done"], f"a writer never got a commit through: {run.result}"
    assert len({d["oid"] for d in done}) == len(done), "two commits reported the same id"

    tree = hub.http.get(f"/api/models/{repo}/tree/main?recursive=true&expand=false")
    assert tree.status_code == 200
    present = {e["path"] for e in tree.json() if e["type"] == "file"}
    missing = {d["path"] for d in done} - present
    assert not missing, f"lost updates: {sorted(missing)}"
    assert present == {d["path"] for d in done} | {".gitattributes"}

    commits = hub.http.get(f"/api/models/{repo}/commits/main")
    assert commits.status_code == 200
    ids = [c["id"] for c in commits.json()]
    assert len(ids) == len(done) + 1, "history must hold every successful commit and the initial one"
    assert {d["oid"] for d in done} <= set(ids)
