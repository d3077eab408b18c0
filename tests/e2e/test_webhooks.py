"""Webhooks with the real client and a receiver on loopback: manage them (create, list, get,
update, enable, disable, delete), then check the payloads delivered for a push through git, a
commit through the API, a pull request opened, a comment and a deleted repository; that events
of a private repository stop once the webhook's owner loses access; that a failing receiver is
retried, then logged as failed; and that bad input is refused with nothing written."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import unique
from test_git import Git

WAIT_S = 30


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST; paths under /fail answer 500."""

    def __init__(self):
        self.received: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                with outer.lock:
                    outer.received.append({
                        "path": self.path,
                        "secret": self.headers.get("x-webhook-secret"),
                        "body": json.loads(body or b"null"),
                    })
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def on(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.received if r["path"] == path]

    def wait_for(self, path: str, pred, what: str, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.on(path):
                if pred(r["body"]):
                    return r
            time.sleep(0.1)
        raise AssertionError(f"no delivery of {what} on {path}; got "
                             f"{[ (r['body'] or {}).get('event') for r in self.on(path)]}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def event(body, action, scope):
    return body.get("event") == {"action": action, "scope": scope}


MANAGE = """
from huggingface_hub import HfApi
api = HfApi()
url = ARGS["url"]
w = api.create_webhook(url=url, watched=[{"type": "user", "name": "admin"}],
                       domains=["repo", "discussion"], secret="s3cret")
got = api.get_webhook(w.id)
listed = [x.id for x in api.list_webhooks()]
upd = api.update_webhook(w.id, url=url + "/v2", watched=[{"type": "model", "name": ARGS["repo"]}],
                         domains=["repo"])
off = api.disable_webhook(w.id)
on = api.enable_webhook(w.id)
api.delete_webhook(w.id)
gone = attempt(api.get_webhook, w.id)
bad_scheme = attempt(api.create_webhook, url="ftp://127.0.0.1/x", watched=[{"type": "user", "name": "admin"}])
bad_domain = attempt(api.create_webhook, url=url, watched=[{"type": "user", "name": "admin"}], domains=["nope"])
bad_watch = attempt(api.create_webhook, url=url, watched=[{"type": "galaxy", "name": "x"}])
no_watch = attempt(api.create_webhook, url=url, watched=[])
after = [x.id for x in api.list_webhooks()]
emit({
    "id": w.id, "url": w.url, "watched": [(x.type, x.name) for x in w.watched], "domains": w.domains,
    "secret": w.secret, "disabled": w.disabled, "got": got.id, "listed": listed,
    "upd": {"url": upd.url, "watched": [(x.type, x.name) for x in upd.watched], "domains": upd.domains,
            "secret": upd.secret},
    "off": off.disabled, "on": on.disabled, "gone": gone,
    "bad": [bad_scheme, bad_domain, bad_watch, no_watch], "after": after,
})
"""


def test_manage_webhooks_with_the_client(client, hub, receiver):
    repo = hub.create_repo("hook-manage")
    r = client.py(MANAGE, args={"url": receiver.url + "/m", "repo": repo}).result
    assert len(r["id"]) == 24 and r["url"] == receiver.url + "/m"
    assert r["watched"] == [["user", "admin"]] and r["domains"] == ["repo", "discussion"]
    assert r["secret"] == "s3cret" and r["disabled"] is False
    assert r["got"] == r["id"] and r["id"] in r["listed"]
    assert r["upd"] == {"url": receiver.url + "/m/v2", "watched": [["model", repo]],
                        "domains": ["repo"], "secret": "s3cret"}
    assert r["off"] is True and r["on"] is False
    assert r["gone"]["status"] == 404
    for bad in r["bad"]:
        assert bad["status"] == 400, bad
    assert r["id"] not in r["after"] and len(r["after"]) == len(r["listed"]) - 1


def test_other_users_cannot_see_or_change_a_webhook(hub, bob, receiver, admin_read_token):
    admin = hub.auth(hub.server.admin_token)
    r = hub.http.post("/api/settings/webhooks", headers=admin, json={
        "url": receiver.url + "/x", "watched": [{"type": "user", "name": "admin"}],
        "domains": ["repo"]})
    assert r.status_code == 200, r.text
    wid = r.json()["webhook"]["id"]
    bobh = hub.auth(bob.token)
    assert hub.http.get(f"/api/settings/webhooks/{wid}", headers=bobh).status_code == 404
    assert hub.http.delete(f"/api/settings/webhooks/{wid}", headers=bobh).status_code == 404
    assert wid not in [w["id"] for w in hub.http.get("/api/settings/webhooks", headers=bobh).json()]
    r = hub.http.post("/api/settings/webhooks", headers=hub.auth(admin_read_token), json={
        "url": receiver.url, "watched": [{"type": "user", "name": "admin"}]})
    assert r.status_code == 403 and r.headers.get("x-error-message")
    assert hub.http.get("/api/settings/webhooks").status_code == 401
    assert hub.http.get(f"/api/settings/webhooks/{wid}", headers=admin).json()["webhook"]["url"] \
        == receiver.url + "/x"
    hub.http.delete(f"/api/settings/webhooks/{wid}", headers=admin)


EVENTS = """
from huggingface_hub import HfApi, CommitOperationAdd
api = HfApi()
repo = ARGS["repo"]
c = api.create_commit(repo, [CommitOperationAdd("api.txt", b"from the api")], commit_message="api commit")
pr = api.create_pull_request(repo, title="A PR", description="please")
cm = api.comment_discussion(repo, pr.num, "looks good")
api.create_branch(repo, branch="dev")
api.create_tag(repo, tag="v1")
api.delete_branch(repo, branch="dev")
emit({"commit": c.oid, "pr": pr.num, "comment": cm.id})
"""


def test_payloads_for_push_commit_pr_comment_and_delete(client, hub, receiver, tmp_path):
    repo = hub.create_repo("hooked")
    admin = hub.auth(hub.server.admin_token)
    r = hub.http.post("/api/settings/webhooks", headers=admin, json={
        "url": receiver.url + "/all", "watched": [{"type": "model", "name": repo}],
        "domains": ["repo", "discussion"], "secret": "shh"})
    assert r.status_code == 200, r.text
    wid = r.json()["webhook"]["id"]

    git = Git(hub.server, tmp_path / "git")
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    old = git.head(work)
    new = git.commit_file(work, "pushed.txt", b"through git", "a push")
    git.run("push", "origin", "main", cwd=work)
    push = receiver.wait_for("/all", lambda b: event(b, "update", "repo.content") and any(
        u.get("newSha") == new for u in b.get("updatedRefs", [])), "the push")
    assert push["secret"] == "shh"
    b = push["body"]
    assert b["repo"]["name"] == repo and b["repo"]["type"] == "model"
    assert b["repo"]["private"] is False and b["repo"]["headSha"] == new
    assert b["repo"]["url"]["web"] == f"{hub.url}/{repo}"
    assert b["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": old, "newSha": new}]
    assert b["webhook"] == {"id": wid, "version": 3}

    out = client.py(EVENTS, args={"repo": repo}).result
    commit = receiver.wait_for("/all", lambda b: event(b, "update", "repo.content") and any(
        u.get("newSha") == out["commit"] for u in b.get("updatedRefs", [])), "the API commit")
    assert commit["body"]["repo"]["headSha"] == out["commit"]
    opened = receiver.wait_for("/all", lambda b: event(b, "create", "discussion"), "the PR")
    d = opened["body"]["discussion"]
    assert d["num"] == out["pr"] and d["isPullRequest"] is True and d["title"] == "A PR"
    assert d["author"]["id"] == "admin" and d["changes"]["base"] == "refs/heads/main"
    assert d["url"]["web"] == f"{hub.url}/{repo}/discussions/{out['pr']}"
    comment = receiver.wait_for("/all", lambda b: event(b, "create", "discussion.comment"),
                                "the comment")
    c = comment["body"]["comment"]
    assert c["content"] == "looks good" and c["id"] == out["comment"] and c["hidden"] is False
    assert comment["body"]["discussion"]["num"] == out["pr"]

    def ref_event(name, new):
        return lambda b: event(b, "update", "repo.content") and any(
            u.get("ref") == name and u.get("newSha") == new for u in b.get("updatedRefs", []))

    receiver.wait_for("/all", ref_event("refs/heads/dev", out["commit"]), "the branch created")
    receiver.wait_for("/all", ref_event("refs/tags/v1", out["commit"]), "the tag created")
    receiver.wait_for("/all", ref_event("refs/heads/dev", None), "the branch deleted")

    r = hub.http.request("DELETE", "/api/repos/delete", headers=admin,
                         json={"name": repo.split("/")[1], "organization": "admin", "type": "model"})
    assert r.status_code == 200, r.text
    deleted = receiver.wait_for("/all", lambda b: event(b, "delete", "repo"), "the deletion")
    assert deleted["body"]["repo"]["name"] == repo

    log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=admin).json()
    assert {e["state"] for e in log} <= {"delivered", "pending"}
    assert any(e["event"] == "delete repo" and e["state"] == "delivered" and e["status"] == 200
               for e in log), log
    assert all(e["durationMs"] is not None for e in log if e["state"] == "delivered")


def test_private_repo_events_stop_when_the_owner_loses_access(hub, receiver):
    server = hub.server
    org = unique("hookorg")
    member = unique("carol")
    server.create_user(member)
    token = server.create_token(member, role="write", name="hooks")
    server.admin_cli("org", "create", org, "--owner", "admin")
    server.admin_cli("org", "add-member", org, member, "--role", "read")
    r = hub.http.post("/api/settings/webhooks", headers=hub.auth(token), json={
        "url": receiver.url + "/priv", "watched": [{"type": "org", "name": org}],
        "domains": ["repo"]})
    assert r.status_code == 200, r.text
    wid = r.json()["webhook"]["id"]
    repo = hub.create_repo("secret", private=True, namespace=org)
    first = hub.commit_files(repo, {"a.txt": b"1"})
    receiver.wait_for("/priv", lambda b: any(u.get("newSha") == first
                                             for u in b.get("updatedRefs", [])), "the member's event")

    server.admin_cli("org", "remove-member", org, member)
    second = hub.commit_files(repo, {"b.txt": b"2"})
    deadline = time.monotonic() + WAIT_S
    skipped = []
    while time.monotonic() < deadline and not skipped:
        log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=hub.auth(token)).json()
        skipped = [e for e in log if e["state"] == "skipped"]
        time.sleep(0.2)
    assert skipped, log
    assert "may not read" in skipped[0]["error"]
    assert not any(any(u.get("newSha") == second for u in r["body"].get("updatedRefs", []))
                   for r in receiver.on("/priv"))


def test_a_failing_receiver_is_retried_then_logged(hub, receiver):
    admin = hub.auth(hub.server.admin_token)
    repo = hub.create_repo("hook-fail")
    r = hub.http.post("/api/settings/webhooks", headers=admin, json={
        "url": receiver.url + "/fail", "watched": [{"type": "model", "name": repo}],
        "domains": ["repo"]})
    wid = r.json()["webhook"]["id"]
    started = time.monotonic()
    hub.commit_files(repo, {"x.txt": b"x"})
    deadline = started + WAIT_S
    failed = []
    while time.monotonic() < deadline and not failed:
        log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=admin).json()
        failed = [e for e in log if e["state"] == "failed"]
        time.sleep(0.3)
    assert failed, log
    assert failed[0]["attempts"] == 4 and failed[0]["status"] == 500
    assert "500" in failed[0]["error"]
    attempts = receiver.on("/fail")
    assert len(attempts) == 4
    # Backoff: 1 s, 2 s, 4 s between attempts, so at least 7 s in all.
    assert time.monotonic() - started >= 7


def test_bad_webhook_input_is_refused_and_nothing_written(hub):
    admin = hub.auth(hub.server.admin_token)
    before = hub.http.get("/api/settings/webhooks", headers=admin).json()
    watched = [{"type": "user", "name": "admin"}]
    cases = [
        {"url": "file:///etc/passwd", "watched": watched},
        {"url": "http://", "watched": watched},
        {"url": "http://127.0.0.1/" + "a" * 3000, "watched": watched},
        {"watched": watched},
        {"jobSourceId": "abc", "watched": watched},
        {"url": "http://127.0.0.1/", "watched": watched, "secret": "é"},
        {"url": "http://127.0.0.1/", "watched": [{"type": "model", "name": "no-slash"}]},
        {"url": "http://127.0.0.1/", "watched": [{"type": "bucket", "name": "a/b"}]},
        {"url": "http://127.0.0.1/", "watched": watched, "domains": []},
    ]
    for body in cases:
        r = hub.http.post("/api/settings/webhooks", headers=admin, json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers.get("x-error-message"), body
    assert hub.http.get("/api/settings/webhooks", headers=admin).json() == before
