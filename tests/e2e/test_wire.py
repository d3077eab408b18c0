"""Wire fidelity (issue #14): what the real client expects of the Hub in the corners — repo
ids without a namespace, pull requests against commits, folder deletes, tags on missing
revisions, abbreviated commit ids, the initial commit's author, a new Space's card, drafts,
the Hub's error texts, and backslashes in paths. Each refusal is checked to change nothing."""

from __future__ import annotations

import pytest

from conftest import b64, ndjson, unique

BARE = """
out = {}
out["repo_exists"] = api.repo_exists("gpt2")
out["revision_exists"] = api.revision_exists("gpt2", "main")
out["commits"] = attempt(lambda: list(api.list_repo_commits("gpt2")))
out["unlike"] = attempt(api.unlike, "gpt2")
out["download"] = attempt(huggingface_hub.hf_hub_download, "gpt2", "config.json",
                          cache_dir=ARGS["cache"])
out["dataset_info"] = attempt(api.dataset_info, "squad")
emit(out)
"""


def test_repo_ids_without_a_namespace_are_not_found(client, hub, tmp_path):
    r = client.py(BARE, args={"cache": str(tmp_path / "cache")}).result
    assert r["repo_exists"] is False and r["revision_exists"] is False
    for call in ("commits", "unlike", "download", "dataset_info"):
        assert r[call]["ok"] is False and "RepositoryNotFoundError" in r[call]["mro"], (call, r[call])
        assert r[call]["status"] == 404 and r[call]["error_code"] == "RepoNotFound", (call, r[call])
    token = hub.auth(hub.token())
    for method, path in [("GET", "/api/models/gpt2"), ("GET", "/api/models/gpt2/revision/main"),
                         ("GET", "/api/models/gpt2/commits/main"), ("GET", "/api/models/gpt2/tree/main"),
                         ("POST", "/api/models/gpt2/like"), ("DELETE", "/api/models/gpt2/like"),
                         ("GET", "/api/datasets/squad/refs"), ("HEAD", "/gpt2/resolve/main/config.json"),
                         ("GET", "/spaces/demo/resolve/main/app.py")]:
        signed = hub.http.request(method, path, headers=token)
        assert signed.status_code == 404 and signed.headers["x-error-code"] == "RepoNotFound", (method, path)
        anonymous = hub.http.request(method, path)
        assert anonymous.status_code == 401 and anonymous.headers["x-error-code"] == "RepoNotFound"
    # Other unknown endpoints stay 501.
    r = hub.http.get("/api/no-such-endpoint", headers=token)
    assert r.status_code == 501 and r.headers["x-error-code"] == "NotImplemented"


REFS = """
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
repo, sha = ARGS["repo"], ARGS["sha"]
out = {}
out["pr_on_sha"] = attempt(lambda: api.create_commit(
    repo, [CommitOperationAdd("pr.txt", b"x")], commit_message="pr", revision=sha, create_pr=True))
out["pr_on_tag"] = attempt(lambda: api.create_commit(
    repo, [CommitOperationAdd("pr.txt", b"x")], commit_message="pr", revision="v0", create_pr=True))
out["tag_missing_rev"] = attempt(api.create_tag, repo, tag="v1", revision="no-such-branch")
out["tag_missing_rev_bad_name"] = attempt(api.create_tag, repo, tag="bad..name", revision="no-such-branch")
out["tag_short"] = attempt(api.create_tag, repo, tag="short", revision=sha[:8])
out["branch_short"] = attempt(api.create_branch, repo, branch="from-short", revision=sha[:7])
out["info_short"] = api.model_info(repo, revision=sha[:7]).sha
out["tree_short"] = sorted(e.path for e in api.list_repo_tree(repo, revision=sha[:10]))
out["download_short"] = open(huggingface_hub.hf_hub_download(
    repo, "dir/a.txt", revision=sha[:7], cache_dir=ARGS["cache"]), "rb").read().decode()
out["refs"] = {"tags": {t.name: t.target_commit for t in api.list_repo_refs(repo).tags},
               "branches": {b.name: b.target_commit for b in api.list_repo_refs(repo).branches}}
out["short_missing"] = attempt(api.model_info, repo, revision="abcdef0")
out["delete_as_file"] = attempt(lambda: api.create_commit(
    repo, [CommitOperationDelete("dir", is_folder=False)], commit_message="rm dir").oid)
out["files_after"] = sorted(api.list_repo_files(repo))
out["delete_missing"] = attempt(lambda: api.create_commit(
    repo, [CommitOperationDelete("nowhere", is_folder=False)], commit_message="rm"))
out["discussions"] = len(list(api.get_repo_discussions(repo)))
emit(out)
"""


def test_revisions_prs_tags_short_ids_and_folder_deletes(client, hub, tmp_path):
    repo = hub.create_repo("wire-refs")
    sha = hub.commit_files(repo, {"dir/a.txt": b"a\n", "dir/sub/b.txt": b"b\n", "top.txt": b"t\n"})
    r = hub.http.post(f"/api/models/{repo}/tag/main", json={"tag": "v0"}, headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    r = client.py(REFS, args={"repo": repo, "sha": sha, "cache": str(tmp_path / "c")}).result
    for key in ("pr_on_sha", "pr_on_tag", "tag_missing_rev", "tag_missing_rev_bad_name", "short_missing"):
        assert r[key]["ok"] is False and "RevisionNotFoundError" in r[key]["mro"], (key, r[key])
        assert r[key]["status"] == 404 and r[key]["error_code"] == "RevisionNotFound", (key, r[key])
    assert r["discussions"] == 0, "a refused pull request leaves no discussion"
    assert r["tag_short"]["ok"] and r["branch_short"]["ok"], r
    assert r["info_short"] == sha
    assert r["tree_short"] == ["dir", "top.txt"] or set(r["tree_short"]) >= {"dir", "top.txt"}
    assert r["download_short"] == "a\n"
    assert r["refs"]["tags"]["short"] == sha and r["refs"]["branches"]["from-short"] == sha
    # deletedFile naming a folder deletes the folder, as on the Hub.
    assert r["delete_as_file"]["ok"], r["delete_as_file"]
    assert r["files_after"] == [".gitattributes", "top.txt"]
    assert r["delete_missing"]["ok"] is False and r["delete_missing"]["status"] == 404
    assert r["delete_missing"]["error_code"] == "EntryNotFound"
    # An ambiguous or too short prefix names nothing.
    assert hub.http.get(f"/api/models/{repo}/revision/{sha[:6]}").status_code == 404


CREATE = """
repo, space = ARGS["repo"], ARGS["space"]
out = {}
out["commits"] = [(c.authors, c.title) for c in api.list_repo_commits(repo)]
api.create_repo(space, repo_type="space", space_sdk="gradio")
out["space_files"] = sorted(api.list_repo_files(space, repo_type="space"))
out["space_commit_authors"] = [c.authors for c in api.list_repo_commits(space, repo_type="space")]
huggingface_hub.metadata_update(space, {"tags": ["demo"]}, repo_type="space")
card = huggingface_hub.RepoCard.load(space, repo_type="space")
out["card"] = {"sdk": card.data.sdk, "tags": card.data.tags, "title": card.data.title}
emit(out)
"""


def test_initial_commit_by_the_creator_and_a_space_card(client, hub, bob):
    repo = hub.create_repo("wire-create", namespace=bob.name, token=bob.token)
    space = f"admin/{unique('wire-space')}"
    r = client.py(CREATE, args={"repo": repo, "space": space}).result
    assert [authors for authors, _ in r["commits"]] == [[bob.name]], r["commits"]
    assert r["space_files"] == [".gitattributes", "README.md"]
    assert r["space_commit_authors"] == [["admin"]]
    assert r["card"] == {"sdk": "gradio", "tags": ["demo"], "title": space.split("/")[1]}


DRAFT = """
from huggingface_hub import CommitOperationAdd
repo = ARGS["repo"]
pr = api.create_pull_request(repo, title="work in progress")
api.create_commit(repo, [CommitOperationAdd("wip.txt", b"w")], commit_message="wip",
                  revision=pr.git_reference)
out = {"created": pr.status, "after_commit": api.get_discussion_details(repo, pr.num).status}
out["opened"] = api.change_discussion_status(repo, pr.num, "open").new_status
out["again"] = attempt(api.change_discussion_status, repo, pr.num, "open")
one_shot = api.create_commit(repo, [CommitOperationAdd("b.txt", b"b")], commit_message="at once",
                             create_pr=True)
out["one_shot"] = api.get_discussion_details(repo, one_shot.pr_num).status
emit(out)
"""


def test_a_draft_stays_a_draft_until_opened(client, hub):
    repo = hub.create_repo("wire-draft")
    r = client.py(DRAFT, args={"repo": repo}).result
    assert r["created"] == "draft" and r["after_commit"] == "draft"
    assert r["opened"] == "open"
    assert r["again"]["ok"] is False and r["again"]["status"] == 400
    assert r["one_shot"] == "open", "a pull request opened with its commit is open"


MESSAGES = """
from huggingface_hub import CommitOperationAdd
repo, other = ARGS["repo"], ARGS["other"]
out = {}
out["stale"] = attempt(lambda: api.create_commit(
    repo, [CommitOperationAdd("x.txt", b"x")], commit_message="x", parent_commit=ARGS["old"]))
out["move"] = attempt(api.move_repo, repo, other)
out["branch"] = attempt(api.create_branch, repo, branch="dev")
out["delete_main"] = attempt(api.delete_branch, repo, branch="main")
emit(out)
"""


def test_error_texts_are_the_hubs(client, hub):
    repo = hub.create_repo("wire-msg")
    other = hub.create_repo("wire-other")
    old = hub.head_sha(repo)
    head = hub.commit_files(repo, {"a.txt": b"a"})
    r = hub.http.post(f"/api/models/{repo}/branch/dev", headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    r = client.py(MESSAGES, args={"repo": repo, "other": other, "old": old}).result
    expect = {
        "stale": (412, "The branch was updated since you opened this page. Please refresh and try again."),
        "move": (409, f"A model repository called {other} already exists"),
        "branch": (409, "Reference refs/heads/dev already exists"),
        "delete_main": (403, "Cannot delete refs/heads/main"),
    }
    for key, (status, message) in expect.items():
        assert r[key]["ok"] is False and r[key]["status"] == status, (key, r[key])
        assert message in r[key]["msg"], (key, r[key]["msg"])
    assert hub.head_sha(repo) == head, "refusals change nothing"
    refs = hub.http.get(f"/api/models/{repo}/refs").json()
    assert {b["name"] for b in refs["branches"]} == {"main", "dev"}
    assert hub.info(repo).status_code == 200 and hub.info(other).status_code == 200


BACKSLASH = """
repo = ARGS["repo"]
out = {}
out["nested"] = attempt(lambda: api.upload_file(path_or_fileobj=b"ok", path_in_repo="d/a\\\\b.txt",
                                                repo_id=repo).oid)
for key, path in {"escape": "..\\\\ddd", "first": "a\\\\b", "dotdot": "d/..\\\\..\\\\x",
                  "slash": "../x", "dotgit": "d/x\\\\.git\\\\config"}.items():
    out[key] = attempt(lambda: api.upload_file(path_or_fileobj=b"no", path_in_repo=path, repo_id=repo))
out["files"] = sorted(api.list_repo_files(repo))
emit(out)
"""


def test_backslashes_past_the_first_segment_and_422_for_escaping_paths(client, hub):
    repo = hub.create_repo("wire-bs")
    r = client.py(BACKSLASH, args={"repo": repo}).result
    assert r["nested"]["ok"], r["nested"]
    for key in ("escape", "first", "dotdot", "dotgit"):
        assert r[key]["ok"] is False and r[key]["status"] == 422, (key, r[key])
        assert "Invalid path" in r[key]["msg"], (key, r[key]["msg"])
    # The client itself refuses `../x` before sending anything.
    assert r["slash"]["ok"] is False
    assert r["files"] == [".gitattributes", "d/a\\b.txt"]
    raw = hub.commit_raw(repo, "\n".join([ndjson("header", summary="s", description=""),
                                          ndjson("file", path="../x", content=b64(b"x"),
                                                 encoding="base64")]) + "\n")
    assert raw.status_code == 422 and raw.headers["x-error-message"].startswith("Line 2: Invalid path")


VALIDATE = """
from huggingface_hub import ModelCard, DatasetCard
out = {}
for key, text in ARGS["cards"].items():
    try:
        (DatasetCard if key.startswith("dataset") else ModelCard)(text).validate(
            repo_type="dataset" if key.startswith("dataset") else "model")
        out[key] = {"ok": True}
    except ValueError as exc:
        out[key] = {"ok": False, "msg": str(exc)}
emit(out)
"""


def test_validate_yaml_by_the_hubs_rules(client, hub):
    cards = {
        "good": "---\nlicense: apache-2.0\ntags: [a]\n---\n# ok\n",
        "license": "---\nlicense: my-own-license\n---\n# x\n",
        "types": "---\npipeline_tag: [a, b]\n---\n# x\n",
        "dataset_license": "---\nlicense: [mit, nope]\n---\n# x\n",
        "bare": "# no metadata\n",
    }
    r = client.py(VALIDATE, args={"cards": cards}).result
    assert r["good"] == {"ok": True} and r["bare"] == {"ok": True}
    assert r["license"]["msg"].startswith('- Error: "license" must be one of [apache-2.0, mit, '), r
    assert r["dataset_license"]["msg"].startswith('- Error: "license" must be one of ['), r
    # A model-index the client's card class cannot load itself: over raw HTTP.
    m = hub.http.post("/api/validate-yaml",
                      json={"content": "---\nmodel-index: [{name: m, results: nope}]\n---\n"},
                      headers={**hub.auth(hub.token()), "accept": "text/plain"})
    assert m.status_code == 400 and m.text.startswith('- Error: "model-index" must be a list of'), m.text
    assert r["types"]["msg"] == '- Error: "pipeline_tag" must be a string\n', r
    # YAML the client cannot parse itself: over raw HTTP, as text.
    t = hub.http.post("/api/validate-yaml", json={"content": "---\ntags: [unclosed\n---\n"},
                      headers={**hub.auth(hub.token()), "accept": "text/plain"})
    assert t.status_code == 400 and t.text.startswith("- Error: "), t.text
    j = hub.http.post("/api/validate-yaml", json={"content": cards["license"], "repoType": "model"},
                      headers=hub.auth(hub.token()))
    assert j.status_code == 400 and len(j.json()["errors"]) == 1 and j.json()["warnings"] == []
    j = hub.http.post("/api/validate-yaml", json={"content": cards["bare"]}, headers=hub.auth(hub.token()))
    assert j.status_code == 200 and j.json() == {
        "errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}


def test_cli_wording(trove):
    import subprocess

    from conftest import clean_env

    def cli(*args):
        return subprocess.run([str(trove.binary), *args, "--data-dir", str(trove.data_dir)],
                              capture_output=True, text=True, timeout=60, env=clean_env(),
                              stdin=subprocess.DEVNULL)

    bad = cli("user", "create", "no spaces allowed")
    assert bad.returncode != 0 and 'Invalid user name "no spaces allowed"' in bad.stderr, bad.stderr
    assert "repo" not in bad.stderr.lower()
    org, member = unique("org"), unique("member")
    trove.create_user(member)
    trove.admin_cli("org", "create", org, "--owner", "admin")
    added = cli("org", "add-member", org, member, "--role", "write")
    assert f"{member} is now a member of {org} with the write role" in added.stderr, added.stderr
    audit = cli("audit", "--org", org)
    assert audit.stdout.splitlines()[0] == "TIME\tACTOR\tACTION\tNAMESPACE\tTARGET\tDETAIL", audit.stdout
    # Logs written to a file (not a terminal) carry no colour codes.
    assert "\x1b[" not in trove.log_tail(200)
