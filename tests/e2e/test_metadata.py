"""Listing, refs, history, existence checks, deletes and repo info with the real client."""

from __future__ import annotations

import re

from pathlib import Path

from conftest import git_blob_id, lfs_pointer, sha256_bytes, unique, write_random, write_tree

REGULAR = {
    "a.txt": b"file a\n",
    "dir/b.txt": b"file b\n",
    "dir/sub/c.txt": b"file c\n",
}
D_TXT = b"file d, second commit\n"


def _populate(client, hub, tmp_path: Path, *, repo_type: str = "model", private: bool = False,
              extra: dict[str, bytes] | None = None) -> tuple[str, dict[str, bytes]]:
    """A repo with regular files, one LFS file (first commit) and dir/d.txt (second commit)."""
    files = dict(REGULAR, **(extra or {}))
    src = tmp_path / unique("src")
    write_tree(src, files)
    files["weights/model.bin"] = write_random(src / "weights" / "model.bin", 300_000)
    repo = hub.create_repo("meta", repo_type=repo_type, private=private)
    client.py("""
api.upload_folder(repo_id=ARGS["repo"], repo_type=ARGS["type"], folder_path=ARGS["src"],
                  commit_message="first")
api.upload_file(repo_id=ARGS["repo"], repo_type=ARGS["type"], path_or_fileobj=ARGS["d"].encode(),
                path_in_repo="dir/d.txt", commit_message="second")
""", args={"repo": repo, "type": repo_type, "src": str(src), "d": D_TXT.decode()})
    files["dir/d.txt"] = D_TXT
    return repo, files


TREE_AND_REFS = """
from huggingface_hub import RepoFile, RepoFolder
repo = ARGS["repo"]

def entry(e):
    if isinstance(e, RepoFile):
        return {"kind": "file", "path": e.path, "size": e.size, "blob_id": e.blob_id,
                "lfs": dict(e.lfs) if e.lfs else None, "xet_hash": e.xet_hash}
    return {"kind": "folder", "path": e.path, "tree_id": e.tree_id}

out = {
    "tree": [entry(e) for e in api.list_repo_tree(repo, recursive=True)],
    "dir": [entry(e) for e in api.list_repo_tree(repo, "dir")],
    "missing_dir": attempt(lambda: list(api.list_repo_tree(repo, "no/such/dir"))),
    "paths_info": [entry(e) for e in api.get_paths_info(repo, ["a.txt", "dir", "nope.txt",
                                                               "weights/model.bin"])],
}
commits = api.list_repo_commits(repo)
out["commits"] = [{"id": c.commit_id, "title": c.title, "created_at": c.created_at.isoformat(),
                   "authors": c.authors} for c in commits]
out["initial_files"] = api.list_repo_files(repo, revision=commits[-1].commit_id)
head = commits[0].commit_id

def refs():
    r = api.list_repo_refs(repo)
    return {"branches": {b.name: b.target_commit for b in r.branches},
            "tags": {t.name: t.target_commit for t in r.tags},
            "converts": [c.name for c in r.converts]}

out["refs_before"] = refs()
api.create_branch(repo, branch="b1")
out["branch_dup"] = attempt(api.create_branch, repo, branch="b1")
out["branch_exist_ok"] = attempt(api.create_branch, repo, branch="b1", exist_ok=True)
api.create_branch(repo, branch="from/old", revision=commits[1].commit_id)
api.create_tag(repo, tag="t1", revision=commits[1].commit_id, tag_message="older")
out["tag_dup"] = attempt(api.create_tag, repo, tag="t1")
out["tag_exist_ok"] = attempt(api.create_tag, repo, tag="t1", exist_ok=True)
out["refs_created"] = refs()
out["old_branch_files"] = sorted(api.list_repo_files(repo, revision="from/old"))
api.delete_branch(repo, branch="b1")
api.delete_branch(repo, branch="from/old")
api.delete_tag(repo, tag="t1")
out["refs_after"] = refs()
out["b1_exists"] = api.revision_exists(repo, "b1")
out["t1_exists"] = api.revision_exists(repo, "t1")
emit(out)
"""


def test_tree_paths_info_refs_commits_branches_tags(client, hub, tmp_path):
    repo, files = _populate(client, hub, tmp_path)
    head = hub.head_sha(repo)
    r = client.py(TREE_AND_REFS, args={"repo": repo}).result
    lfs_data = files["weights/model.bin"]

    tree = {e["path"]: e for e in r["tree"]}
    assert set(tree) == set(files) | {".gitattributes", "dir", "dir/sub", "weights"}
    for folder in ("dir", "dir/sub", "weights"):
        assert tree[folder]["kind"] == "folder" and len(tree[folder]["tree_id"]) == 40
    for path, data in files.items():
        e = tree[path]
        assert e["kind"] == "file" and e["size"] == len(data), e
        if path == "weights/model.bin":
            # An LFS upload is chunked into the one chunk store: the file is a Xet file too.
            assert re.fullmatch(r"[0-9a-f]{64}", e["xet_hash"] or ""), e
        else:
            assert e["xet_hash"] is None, "a file kept in git is not a Xet file"
        if path == "weights/model.bin":
            assert e["lfs"] == {"size": len(data), "sha256": sha256_bytes(data),
                                "pointer_size": len(lfs_pointer(data))}
            assert e["blob_id"] == git_blob_id(lfs_pointer(data))
        else:
            assert e["lfs"] is None
            assert e["blob_id"] == git_blob_id(data)

    assert {e["path"] for e in r["dir"]} == {"dir/b.txt", "dir/d.txt", "dir/sub"}
    assert "EntryNotFoundError" in r["missing_dir"]["mro"], r["missing_dir"]

    info = {e["path"]: e for e in r["paths_info"]}
    assert set(info) == {"a.txt", "dir", "weights/model.bin"}, "missing paths are omitted"
    assert info["a.txt"]["kind"] == "file" and info["a.txt"]["size"] == len(files["a.txt"])
    assert info["dir"]["kind"] == "folder"
    assert info["weights/model.bin"]["lfs"]["sha256"] == sha256_bytes(lfs_data)
    assert info["weights/model.bin"]["size"] == len(lfs_data)

    commits = r["commits"]
    assert len(commits) == 3, "initial commit + two uploads"
    assert commits[0]["id"] == head
    assert [c["title"] for c in commits[:2]] == ["second", "first"]
    assert commits[0]["created_at"] >= commits[1]["created_at"] >= commits[2]["created_at"]
    assert r["initial_files"] == [".gitattributes"]

    assert r["refs_before"] == {"branches": {"main": head}, "tags": {}, "converts": []}
    assert r["branch_dup"]["status"] == 409, r["branch_dup"]
    assert r["branch_exist_ok"]["ok"] is True, r["branch_exist_ok"]
    assert r["tag_dup"]["status"] == 409, r["tag_dup"]
    assert r["tag_exist_ok"]["ok"] is True, r["tag_exist_ok"]
    assert r["refs_created"]["branches"] == {"main": head, "b1": head, "from/old": commits[1]["id"]}
    assert r["refs_created"]["tags"] == {"t1": commits[1]["id"]}
    assert "dir/d.txt" not in r["old_branch_files"] and "a.txt" in r["old_branch_files"]
    assert r["refs_after"] == r["refs_before"]
    assert r["b1_exists"] is False and r["t1_exists"] is False


EXISTS = """
repo = ARGS["repo"]
emit({
    "file_yes": api.file_exists(repo, "dir/sub/c.txt"),
    "lfs_yes": api.file_exists(repo, "weights/model.bin"),
    "file_no": api.file_exists(repo, "dir/nope.txt"),
    "file_bad_rev": api.file_exists(repo, "a.txt", revision="no-such-branch"),
    "file_bad_repo": api.file_exists(ARGS["missing"], "a.txt"),
    "repo_yes": api.repo_exists(repo),
    "repo_no": api.repo_exists(ARGS["missing"]),
    "rev_main": api.revision_exists(repo, "main"),
    "rev_sha": api.revision_exists(repo, ARGS["sha"]),
    "rev_tag": api.revision_exists(repo, "v1"),
    "rev_no": api.revision_exists(repo, "no-such-branch"),
    "rev_bad_sha": api.revision_exists(repo, "0" * 40),
    "rev_bad_repo": api.revision_exists(ARGS["missing"], "main"),
})
"""


def test_file_repo_revision_exists(client, hub, tmp_path):
    repo, _ = _populate(client, hub, tmp_path)
    sha = hub.head_sha(repo)
    client.py('api.create_tag(ARGS["repo"], tag="v1")', args={"repo": repo})
    args = {"repo": repo, "missing": f"admin/{unique('missing')}", "sha": sha}
    r = client.py(EXISTS, args=args).result
    assert r == {
        "file_yes": True, "lfs_yes": True, "file_no": False, "file_bad_rev": False,
        "file_bad_repo": False, "repo_yes": True, "repo_no": False, "rev_main": True,
        "rev_sha": True, "rev_tag": True, "rev_no": False, "rev_bad_sha": False,
        "rev_bad_repo": False,
    }
    # anonymous client: same answers for a public repo, no exceptions
    anon = client.py(EXISTS, args=args, token=None).result
    assert anon == r


DELETES = """
repo = ARGS["repo"]
api.delete_file("gone.txt", repo)
api.delete_folder("folder", repo)
files = sorted(api.list_repo_files(repo))
head = api.model_info(repo).sha
missing = attempt(api.delete_file, "missing.txt", repo)
emit({"files": files, "head": head, "missing": missing, "head_after": api.model_info(repo).sha})
"""


def test_delete_file_and_folder(client, hub):
    repo = hub.create_repo("deletes")
    hub.commit_files(repo, {p: p.encode() for p in
                            ["keep.txt", "gone.txt", "folder/a.txt", "folder/sub/b.txt", "other/c.txt",
                             "folderish.txt"]})
    r = client.py(DELETES, args={"repo": repo}).result
    assert r["files"] == [".gitattributes", "folderish.txt", "keep.txt", "other/c.txt"]
    assert r["missing"]["ok"] is False
    assert "EntryNotFoundError" in r["missing"]["mro"], r["missing"]
    assert r["missing"]["status"] == 404
    assert r["head_after"] == r["head"], "a failed delete must not commit"


README = """---
license: mit
tags:
  - e2e
  - trove
---
# Test card

Some text.
"""

INFO = """
from datetime import datetime
repo, kind = ARGS["repo"], ARGS["type"]
fn = api.model_info if kind == "model" else api.dataset_info
info = fn(repo, files_metadata=True)
plain = fn(repo)
emit({
    "id": info.id,
    "sha": info.sha,
    "private": info.private,
    "last_modified_is_datetime": isinstance(info.last_modified, datetime),
    "card_class": type(info.card_data).__name__,
    "license": info.card_data.license if info.card_data else None,
    "tags_in_card": list(info.card_data.tags or []) if info.card_data else None,
    "siblings": [{"rfilename": s.rfilename, "size": s.size, "blob_id": s.blob_id,
                  "lfs": dict(s.lfs) if s.lfs else None} for s in info.siblings],
    "plain_siblings": sorted(s.rfilename for s in plain.siblings),
})
"""


def _check_info(result: dict, repo: str, sha: str, files: dict[str, bytes], private: bool) -> None:
    assert result["id"] == repo
    assert result["sha"] == sha
    assert result["private"] is private
    assert result["last_modified_is_datetime"] is True
    assert result["license"] == "mit"
    assert {"e2e", "trove"} <= set(result["tags_in_card"])
    siblings = {s["rfilename"]: s for s in result["siblings"]}
    assert set(siblings) == set(files) | {".gitattributes"}
    assert result["plain_siblings"] == sorted(siblings)
    for path, data in files.items():
        s = siblings[path]
        assert s["size"] == len(data), s
        if path.endswith(".bin"):
            assert s["lfs"] == {"size": len(data), "sha256": sha256_bytes(data),
                                "pointer_size": len(lfs_pointer(data))}
            assert s["blob_id"] == git_blob_id(lfs_pointer(data))
        else:
            assert s["lfs"] is None
            assert s["blob_id"] == git_blob_id(data)


def test_model_info_files_metadata_and_card_data(client, hub, tmp_path):
    repo, files = _populate(client, hub, tmp_path, extra={"README.md": README.encode()})
    r = client.py(INFO, args={"repo": repo, "type": "model"}).result
    assert r["card_class"] == "ModelCardData"
    _check_info(r, repo, hub.head_sha(repo), files, private=False)


def test_private_dataset_info_files_metadata_and_card_data(client, hub, tmp_path):
    repo, files = _populate(client, hub, tmp_path, repo_type="dataset", private=True,
                            extra={"README.md": README.encode()})
    r = client.py(INFO, args={"repo": repo, "type": "dataset"}).result
    assert r["card_class"] == "DatasetCardData"
    _check_info(r, repo, hub.head_sha(repo, repo_type="dataset"), files, private=True)


HOSTILE_CARD_INFO = """
import time
repo = ARGS["repo"]
# The client checks a README with validate-yaml first, which refuses an over-budget card:
# it is committed without that check (as git would), through the NDJSON API.
refused = attempt(api.upload_file, repo_id=repo, path_or_fileobj=ARGS["card"].encode(),
                  path_in_repo="README.md", commit_message="hostile card")
assert refused["ok"] is False and "Invalid metadata" in refused["msg"], refused
import base64, httpx
line = lambda key, **v: json.dumps({"key": key, "value": v})
body = "\\n".join([line("header", summary="hostile card", description=""),
                  line("file", path="README.md", encoding="base64",
                       content=base64.b64encode(ARGS["card"].encode()).decode())]) + "\\n"
r = httpx.post(f"{api.endpoint}/api/models/{repo}/commit/main", content=body.encode(),
               headers={"authorization": f"Bearer {api.token or huggingface_hub.get_token()}",
                        "content-type": "application/x-ndjson"}, timeout=60)
assert r.status_code == 200, r.text
timings = []
for _ in range(3):
    start = time.monotonic()
    info = api.model_info(repo)
    timings.append(time.monotonic() - start)
api.create_branch(repo, branch="good-card")
api.upload_file(repo_id=repo, path_or_fileobj=ARGS["good"].encode(), path_in_repo="README.md",
                commit_message="good card", revision="good-card")
on_branch = api.model_info(repo, revision="good-card")
emit({
    "card_data": info.card_data.to_dict() if info.card_data else None,
    "slowest": max(timings),
    "branch_license": on_branch.card_data.license if on_branch.card_data else None,
})
"""


def test_a_hostile_card_commits_and_info_stays_fast(client, hub):
    """Issue #11: a 27 KB card whose 20 KB anchor is referenced 2,500 times used to grow the
    server by ~290 MiB and stall anonymous info. It commits, its metadata is ignored with a
    warning, and info answers at once; a card on another branch is read at its revision."""
    repo = hub.create_repo("hostile-card")
    card = ("---\nlicense: mit\na: &a \"" + "x" * 20_000 + "\"\nb: ["
            + ",".join(["*a"] * 2500) + "]\n---\n# Card\n")
    good = "---\nlicense: apache-2.0\n---\n# Good\n"
    r = client.py(HOSTILE_CARD_INFO, args={"repo": repo, "card": card, "good": good}).result
    assert r["card_data"] is None
    assert r["slowest"] < 2.0, r
    assert r["branch_license"] == "apache-2.0"
    info = hub.http.get(f"/api/models/{repo}")
    assert info.status_code == 200
    assert "too costly" in " ".join(info.json()["cardWarnings"])
    assert info.headers["x-hf-warning"].startswith("card;")
