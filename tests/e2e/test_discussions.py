"""Discussions and pull requests with the real client: open, comment, edit, hide, rename,
close and reopen, list with filters and pages; pull requests opened by a commit, by the API or
by upload_folder, commits pushed to them, merges (fast-forward, merge commit, conflicts), and
who may do what."""

from __future__ import annotations

import pytest

from conftest import ndjson, quote_all, sha256_bytes, unique, write_tree

LIFECYCLE = """
repo = ARGS["repo"]
d = api.create_discussion(repo, "Question about the license", description="Is it **MIT**?")
c = api.comment_discussion(repo, d.num, "Also: <script>alert(1)</script>")
edited = api.edit_discussion_comment(repo, d.num, c.id, "Also: which version?")
hidden = api.hide_discussion_comment(repo, d.num, c.id)
renamed = api.rename_discussion(repo, d.num, "License question")
closed = api.change_discussion_status(repo, d.num, "closed", comment="answered")
details = api.get_discussion_details(repo, d.num)
reopened = api.change_discussion_status(repo, d.num, "open")
emit({
    "num": d.num, "status": d.status, "is_pr": d.is_pull_request, "author": d.author,
    "first": {"content": d.events[0].content, "html": d.events[0].rendered},
    "comment": {"content": c.content, "html": c.rendered, "id": c.id},
    "edited": {"content": edited.content, "edits": edited.number_of_edits, "edited": edited.edited},
    "hidden": hidden.hidden,
    "renamed": [renamed.old_title, renamed.new_title],
    "closed": closed.new_status,
    "details_status": details.status, "title": details.title,
    "event_types": [e.type for e in details.events],
    "reopened": reopened.new_status,
})
"""


def test_discussion_lifecycle(client, hub):
    repo = hub.create_repo("disc")
    r = client.py(LIFECYCLE, args={"repo": repo}).result
    assert r["num"] == 1 and r["status"] == "open" and r["is_pr"] is False
    assert r["author"] == "admin"
    assert r["first"]["content"] == "Is it **MIT**?"
    assert "<strong>MIT</strong>" in r["first"]["html"]
    assert "<script" not in r["comment"]["html"] and "&lt;script&gt;" in r["comment"]["html"]
    assert len(r["comment"]["id"]) == 24
    assert r["edited"] == {"content": "Also: which version?", "edits": 1, "edited": True}
    assert r["hidden"] is True
    assert r["renamed"] == ["Question about the license", "License question"]
    assert r["closed"] == "closed" and r["details_status"] == "closed"
    assert r["title"] == "License question"
    assert r["event_types"] == ["comment", "comment", "title-change", "comment", "status-change"]
    assert r["reopened"] == "open"


LIST = """
repo = ARGS["repo"]
out = {}
for key, kw in {"all": {}, "prs": {"discussion_type": "pull_request"},
                "discussions": {"discussion_type": "discussion"},
                "open": {"discussion_status": "open"}, "closed": {"discussion_status": "closed"},
                "by_bob": {"author": ARGS["bob"]}}.items():
    out[key] = [d.num for d in api.get_repo_discussions(repo, **kw)]
emit(out)
"""


def test_listing_pages_and_filters(client, hub, bob):
    repo = hub.create_repo("disc-list")
    headers = hub.auth(hub.token())
    for i in range(53):
        r = hub.http.post(f"/api/models/{repo}/discussions", json={"title": f"topic {i}"}, headers=headers)
        assert r.status_code == 200 and r.json()["num"] == i + 1, r.text
    r = hub.http.post(f"/api/models/{repo}/discussions", json={"title": "bob's PR", "pullRequest": True},
                      headers=hub.auth(bob.token))
    assert r.status_code == 200 and r.json()["status"] == "draft", r.text
    r = hub.http.post(f"/api/models/{repo}/discussions/3/status", json={"status": "closed"}, headers=headers)
    assert r.status_code == 200
    page = hub.http.get(f"/api/models/{repo}/discussions?p=1", headers=headers).json()
    assert page["count"] == 54 and page["start"] == 50 and len(page["discussions"]) == 4
    assert page["discussions"][0]["repo"] == {"name": repo, "type": "model"}

    r = client.py(LIST, args={"repo": repo, "bob": bob.name}).result
    assert r["all"] == list(range(54, 0, -1)), "newest first, across pages"
    assert r["prs"] == [54]
    assert r["discussions"] == list(range(53, 0, -1))
    assert r["closed"] == [3]
    assert 3 not in r["open"] and 54 in r["open"] and len(r["open"]) == 53
    assert r["by_bob"] == [54]


FOLDER_PR = """
from huggingface_hub import hf_hub_download
repo = ARGS["repo"]
info = api.upload_folder(folder_path=ARGS["folder"], repo_id=repo, create_pr=True,
                         commit_message="Add a folder")
pr = info.pr_num
files = sorted(api.list_repo_files(repo, revision=f"refs/pr/{pr}"))
big = hf_hub_download(repo, "data/big.bin", revision=f"refs/pr/{pr}")
refs = api.list_repo_refs(repo, include_pull_requests=True)
api.merge_pull_request(repo, pr)
emit({"pr": pr, "files": files, "big": sha256_file(big),
      "pull_requests": [r.ref for r in refs.pull_requests],
      "main_files": sorted(api.list_repo_files(repo)),
      "status": api.get_discussion_details(repo, pr).status})
"""


def test_upload_folder_with_create_pr_then_merge(client, hub, tmp_path):
    repo = hub.create_repo("disc-folder")
    big = bytes(range(256)) * 8192  # 2 MiB: goes through LFS
    write_tree(tmp_path / "folder", {"README.md": b"# hi\n", "data/big.bin": big})
    r = client.py(FOLDER_PR, args={"repo": repo, "folder": str(tmp_path / "folder")}).result
    assert r["files"] == [".gitattributes", "README.md", "data/big.bin"]
    assert r["big"] == sha256_bytes(big)
    assert f"refs/pr/{r['pr']}" in r["pull_requests"]
    assert r["main_files"] == [".gitattributes", "README.md", "data/big.bin"]
    assert r["status"] == "merged"


CONTRIBUTOR = """
from huggingface_hub import CommitOperationAdd
repo = ARGS["repo"]
out = {}
out["main"] = attempt(api.create_commit, repo, [CommitOperationAdd("x.txt", b"x")], commit_message="direct")
info = api.create_commit(repo, [CommitOperationAdd("weights.bin", bytes(range(256)) * 4096),
                               CommitOperationAdd("a.txt", b"from bob")],
                         commit_message="Bob's proposal", create_pr=True)
out["pr"] = info.pr_num
out["push"] = attempt(lambda: api.create_commit(repo, [CommitOperationAdd("b.txt", b"more")],
                      commit_message="more", revision=info.pr_revision).oid)
out["merge"] = attempt(api.merge_pull_request, repo, info.pr_num)
out["comment"] = attempt(lambda: api.comment_discussion(repo, info.pr_num, "please review").id)
out["close_other"] = attempt(api.change_discussion_status, repo, ARGS["other"], "closed")
emit(out)
"""


def test_contributors_open_and_push_to_their_own_pull_requests_only(client, hub, bob):
    repo = hub.create_repo("disc-contrib")
    head = hub.head_sha(repo)
    other = hub.http.post(f"/api/models/{repo}/discussions", json={"title": "admin's"},
                          headers=hub.auth(hub.token())).json()["num"]
    r = client.py(CONTRIBUTOR, token=bob.token, args={"repo": repo, "other": other}).result
    assert r["main"]["status"] == 403, r["main"]
    assert r["pr"] == other + 1
    assert r["push"]["ok"], r["push"]
    assert r["merge"]["status"] == 403, r["merge"]
    assert r["comment"]["ok"], r["comment"]
    assert r["close_other"]["status"] == 403, r["close_other"]
    assert hub.head_sha(repo) == head, "nothing a contributor did may move main"
    pr_ref = quote_all(f"refs/pr/{r['pr']}")
    files = hub.http.get(f"/api/models/{repo}/tree/{pr_ref}?recursive=true", headers=hub.auth(hub.token())).json()
    assert sorted(e["path"] for e in files) == [".gitattributes", "a.txt", "b.txt", "weights.bin"]

    # Another signed-in user cannot push to bob's pull request.
    carol_name = unique("carol")
    hub.server.create_user(carol_name)
    carol = hub.server.create_token(carol_name, role="write")
    body = "\n".join([ndjson("header", summary="hijack", description=""),
                      ndjson("file", path="evil.txt", content="ZXZpbA==", encoding="base64")]) + "\n"
    r2 = hub.commit_raw(repo, body, revision=f"refs/pr/{r['pr']}", token=carol)
    assert r2.status_code == 403, r2.text
    # The writer merges; the PR's LFS file is on main afterwards.
    m = hub.http.post(f"/api/models/{repo}/discussions/{r['pr']}/merge", headers=hub.auth(hub.token()))
    assert m.status_code == 200, m.text
    main = hub.http.get(f"/api/models/{repo}/tree/main?recursive=true", headers=hub.auth(hub.token())).json()
    assert {e["path"] for e in main} >= {"a.txt", "b.txt", "weights.bin"}
    # Merged is final; pushing to it is refused.
    r3 = hub.commit_raw(repo, body, revision=f"refs/pr/{r['pr']}")
    assert r3.status_code == 403, r3.text


def test_merge_commit_and_conflicts(hub):
    repo = hub.create_repo("disc-merge")
    hub.commit_files(repo, {"README.md": b"base\n", "shared.txt": b"one\ntwo\nthree\n"})
    headers = hub.auth(hub.token())
    prs = []
    for title in ("clean", "conflicting"):
        r = hub.http.post(f"/api/models/{repo}/discussions", json={"title": title, "pullRequest": True},
                          headers=headers)
        assert r.status_code == 200
        prs.append(r.json()["num"])
    hub.commit_files(repo, {"new.txt": b"new on the PR\n"}, revision=f"refs/pr/{prs[0]}")
    hub.commit_files(repo, {"shared.txt": b"one\nTWO from the PR\nthree\n"}, revision=f"refs/pr/{prs[1]}")
    # main moves on, touching the same line as the second PR.
    main_head = hub.commit_files(repo, {"shared.txt": b"one\nTWO on main\nthree\n"})

    d = hub.http.get(f"/api/models/{repo}/discussions/{prs[1]}?diff=1", headers=headers).json()
    assert d["filesWithConflicts"] == ["shared.txt"]
    assert d["status"] == "draft", "a draft stays a draft through its commits (as on the Hub)"
    assert "+TWO from the PR" in d["diff"]
    r = hub.http.post(f"/api/models/{repo}/discussions/{prs[1]}/merge", headers=headers)
    assert r.status_code == 409 and "shared.txt" in r.headers["x-error-message"]
    assert hub.head_sha(repo) == main_head, "a refused merge changes nothing"

    d = hub.http.get(f"/api/models/{repo}/discussions/{prs[0]}", headers=headers).json()
    assert d["filesWithConflicts"] == []
    r = hub.http.post(f"/api/models/{repo}/discussions/{prs[0]}/merge", json={"comment": "lgtm"},
                      headers=headers)
    assert r.status_code == 200, r.text
    merge = r.json()["mergeCommitId"]
    assert hub.head_sha(repo) == merge != main_head
    commits = hub.http.get(f"/api/models/{repo}/commits/main", headers=headers).json()
    assert commits[0]["id"] == merge and commits[0]["title"].startswith(f"Merge pull request #{prs[0]}")
    files = hub.http.get(f"/api/models/{repo}/tree/main", headers=headers).json()
    assert {"new.txt", "shared.txt"} <= {e["path"] for e in files}
    d = hub.http.get(f"/api/models/{repo}/discussions/{prs[0]}", headers=headers).json()
    assert d["status"] == "merged" and d["changes"]["mergeCommitId"] == merge
    assert [e["type"] for e in d["events"]][-2:] == ["comment", "status-change"]
    # A second merge, or a status change of a merged PR, is refused.
    assert hub.http.post(f"/api/models/{repo}/discussions/{prs[0]}/merge", headers=headers).status_code == 400
    r = hub.http.post(f"/api/models/{repo}/discussions/{prs[0]}/status", json={"status": "open"},
                      headers=headers)
    assert r.status_code == 400


@pytest.mark.parametrize("case", ["empty-title", "bad-status", "merged-status", "missing-num", "zero-num",
                                  "bad-comment-id", "unknown-comment", "merge-discussion", "huge-comment",
                                  "blank-comment", "bad-type", "bad-page", "not-json"])
def test_bad_input_is_refused_cleanly(hub, case):
    repo = hub.create_repo("disc-bad")
    headers = hub.auth(hub.token())
    base = f"/api/models/{repo}/discussions"
    hub.http.post(base, json={"title": "t"}, headers=headers)
    before = hub.http.get(base, headers=headers).json()
    requests = {
        "empty-title": ("post", base, {"title": "   "}, 400),
        "bad-status": ("post", f"{base}/1/status", {"status": "sideways"}, 400),
        "merged-status": ("post", f"{base}/1/status", {"status": "merged"}, 400),
        "missing-num": ("get", f"{base}/99", None, 404),
        "zero-num": ("get", f"{base}/0", None, 404),
        "bad-comment-id": ("post", f"{base}/1/comment/xyz/edit", {"content": "x"}, 404),
        "unknown-comment": ("post", f"{base}/1/comment/{'f' * 24}/hide", None, 404),
        "merge-discussion": ("post", f"{base}/1/merge", None, 400),
        "huge-comment": ("post", f"{base}/1/comment", {"comment": "x" * 70_000}, 400),
        "blank-comment": ("post", f"{base}/1/comment", {"comment": " \n "}, 400),
        "bad-type": ("get", f"{base}?type=issues", None, 400),
        "bad-page": ("get", f"{base}?p=-1", None, 400),
        "not-json": ("post", f"{base}/1/comment", b"{nope", 400),
    }
    method, path, body, status = requests[case]
    kwargs = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    r = hub.http.request(method.upper(), path, headers=headers, **kwargs)
    assert r.status_code == status, (case, r.status_code, r.text)
    assert r.headers.get("x-error-message"), "every refusal says why"
    assert hub.http.get(base, headers=headers).json() == before, "nothing written"


def test_private_repo_discussions_do_not_exist_for_outsiders(hub, bob, admin_read_token):
    repo = hub.create_repo("disc-private", private=True)
    headers = hub.auth(hub.token())
    assert hub.http.post(f"/api/models/{repo}/discussions", json={"title": "internal"},
                         headers=headers).status_code == 200
    for method, path, body in [("GET", "discussions", None), ("GET", "discussions/1", None),
                               ("POST", "discussions", {"title": "x"}),
                               ("POST", "discussions/1/comment", {"comment": "x"}),
                               ("POST", "discussions/1/merge", None)]:
        r = hub.http.request(method, f"/api/models/{repo}/{path}", json=body, headers=hub.auth(bob.token))
        assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound", (path, r.status_code)
        r = hub.http.request(method, f"/api/models/{repo}/{path}", json=body)
        assert r.status_code == 401 and r.headers["x-error-code"] == "RepoNotFound", (path, r.status_code)
    # A read-only token reads but does not write.
    assert hub.http.get(f"/api/models/{repo}/discussions/1", headers=hub.auth(admin_read_token)).status_code == 200
    r = hub.http.post(f"/api/models/{repo}/discussions/1/comment", json={"comment": "x"},
                      headers=hub.auth(admin_read_token))
    assert r.status_code == 403
    events = hub.http.get(f"/api/models/{repo}/discussions/1", headers=headers).json()["events"]
    assert events == []


def test_git_push_to_a_pull_request(trove, hub, bob, tmp_path):
    """`git push origin HEAD:refs/pr/N`: the author of an open pull request (here a
    contributor without write access) and writers may; nobody creates, deletes or pushes to
    someone else's or a closed pull request; branches stay the writers'."""
    import test_git  # its Git helper

    git = test_git.Git(trove, tmp_path)
    repo = hub.create_repo("disc-git")
    main_head = hub.commit_files(repo, {"README.md": b"# base\n"})
    headers = hub.auth(bob.token)
    pr = hub.http.post(f"/api/models/{repo}/discussions", json={"title": "by git", "pullRequest": True},
                       headers=headers).json()["num"]
    other = hub.http.post(f"/api/models/{repo}/discussions", json={"title": "admin's", "pullRequest": True},
                          headers=hub.auth(hub.token())).json()["num"]

    git.clone(git.url(repo, token=bob.token), "work")
    work = tmp_path / "work"
    pushed = git.commit_file(work, "from-git.txt", b"pushed with git\n", "Add a file with git")
    out = git.run("push", "origin", f"HEAD:refs/pr/{pr}", cwd=work)
    assert out.returncode == 0
    d = hub.http.get(f"/api/models/{repo}/discussions/{pr}", headers=headers).json()
    assert d["status"] == "draft", "a pushed commit leaves the draft a draft"
    assert d["events"][-1]["type"] == "commit" and d["events"][-1]["data"] == {
        "subject": "Add a file with git", "oid": pushed}
    files = hub.http.get(f"/api/models/{repo}/tree/refs%2Fpr%2F{pr}", headers=headers).json()
    assert "from-git.txt" in {e["path"] for e in files}

    for ref, why in [("refs/heads/main", "only to pull requests you opened"),
                     (f"refs/pr/{other}", "only the author"),
                     ("refs/pr/99", "does not exist")]:
        refused = git.run("push", "origin", f"HEAD:{ref}", cwd=work, check=False)
        assert refused.returncode != 0 and why in refused.stderr, (ref, refused.stderr)
    refused = git.run("push", "origin", f":refs/pr/{pr}", cwd=work, check=False)
    assert refused.returncode != 0 and "cannot be deleted" in refused.stderr, refused.stderr
    assert hub.head_sha(repo) == main_head, "main never moved"

    # The writer merges; a merged pull request takes no more pushes.
    assert hub.http.post(f"/api/models/{repo}/discussions/{pr}/merge",
                         headers=hub.auth(hub.token())).status_code == 200
    git.commit_file(work, "late.txt", b"late\n", "Too late")
    refused = git.run("push", "origin", f"HEAD:refs/pr/{pr}", cwd=work, check=False)
    assert refused.returncode != 0 and "closed or merged" in refused.stderr, refused.stderr
