"""Webhooks with the real client and a receiver on loopback: manage them (create, list, get,
update, enable, disable, delete), then check the payloads delivered for a push through git, a
commit through the API, a pull request opened, a comment and a deleted repository; that events
of a private repository stop once the webhook's owner loses access; that a failing receiver is
retried, then logged as failed; that bad input is refused with nothing written; that a slow
receiver does not hold back the others; that https receivers are trusted through
`[webhooks] extra_ca_file` (a CA the test makes), an untrusted one failing with a TLS error;
and that without the operator's opt-in (the main server has it) loopback targets are refused
when a webhook is made and, for webhooks made while they were allowed, when it is delivered."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import Hub, TroveServer, unique
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
    # As the Hub sends them: the ref's previous target, `null` only for a ref created.
    assert commit["body"]["updatedRefs"] == [
        {"ref": "refs/heads/main", "oldSha": new, "newSha": out["commit"]}]
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
    deleted = receiver.wait_for("/all", ref_event("refs/heads/dev", None), "the branch deleted")
    assert deleted["body"]["updatedRefs"] == [
        {"ref": "refs/heads/dev", "oldSha": out["commit"], "newSha": None}]
    created = receiver.wait_for("/all", ref_event("refs/tags/v1", out["commit"]), "the tag")
    assert created["body"]["updatedRefs"] == [
        {"ref": "refs/tags/v1", "oldSha": None, "newSha": out["commit"]}]

    r = hub.http.request("DELETE", "/api/repos/delete", headers=admin,
                         json={"name": repo.split("/")[1], "organization": "admin", "type": "model"})
    assert r.status_code == 200, r.text
    deleted = receiver.wait_for("/all", lambda b: event(b, "delete", "repo"), "the deletion")
    assert deleted["body"]["repo"]["name"] == repo

    def deletion_delivered(log):
        return any(e["event"] == "delete repo" and e["state"] == "delivered" and e["status"] == 200
                   for e in log)

    # The receiver has the deletion's body before the hub has its answer and records it:
    # the log says so a moment later (bounded).
    deadline = time.monotonic() + 15
    log = []
    while time.monotonic() < deadline and not deletion_delivered(log):
        log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=admin).json()
        assert {e["state"] for e in log} <= {"delivered", "pending"}
        time.sleep(0.1)
    assert deletion_delivered(log), log
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
    shown = hub.create_repo("shown", namespace=org)
    first = hub.commit_files(repo, {"a.txt": b"1"})
    receiver.wait_for("/priv", lambda b: any(u.get("newSha") == first
                                             for u in b.get("updatedRefs", [])), "the member's event")

    server.admin_cli("org", "remove-member", org, member)
    second = hub.commit_files(repo, {"b.txt": b"2"})
    # One webhook's deliveries go out in order: once the public repo's later event is
    # delivered, the private one's turn has passed.
    later = hub.commit_files(shown, {"c.txt": b"3"})
    receiver.wait_for("/priv", lambda b: any(u.get("newSha") == later
                                             for u in b.get("updatedRefs", [])), "the public event")
    assert not any(any(u.get("newSha") == second for u in r["body"].get("updatedRefs", []))
                   for r in receiver.on("/priv"))
    # Its log shows nothing of the private repository any more: not the event it was sent
    # while a member, not the one it was not sent.
    log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=hub.auth(token)).json()
    assert log and not any(repo in json.dumps(e) for e in log), log


def test_a_webhook_watching_a_user_logs_nothing_of_their_private_repos(hub, bob, receiver):
    r = hub.http.post("/api/settings/webhooks", headers=hub.auth(bob.token), json={
        "url": receiver.url + "/snoop", "watched": [{"type": "user", "name": "admin"}],
        "domains": ["repo", "discussion"]})
    assert r.status_code == 200, r.text
    wid = r.json()["webhook"]["id"]
    hidden = hub.create_repo(unique("hush"), private=True)
    hub.commit_files(hidden, {"a.txt": b"1"})
    r = hub.http.post(f"/api/models/{hidden}/discussions", headers=hub.auth(hub.token()),
                      json={"title": "hush discussion", "description": "x"})
    assert r.status_code == 200, r.text
    shown = hub.create_repo(unique("shown"))
    later = hub.commit_files(shown, {"b.txt": b"2"})
    receiver.wait_for("/snoop", lambda b: any(u.get("newSha") == later
                                              for u in b.get("updatedRefs", [])), "the public event")
    log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=hub.auth(bob.token)).json()
    assert log, log
    seen = json.dumps(log) + json.dumps(receiver.on("/snoop"))
    assert hidden not in seen and "hush" not in seen, seen


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


class SlowReceiver(Receiver):
    """A receiver whose paths under /slow take `delay` seconds to answer (recorded on arrival)."""

    def __init__(self, delay: float):
        super().__init__()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST

        def do_post(h):
            if h.path.startswith("/slow"):
                length = int(h.headers.get("content-length") or 0)
                body = h.rfile.read(min(length, 1 << 20))
                with self.lock:
                    self.received.append({"path": h.path, "secret": h.headers.get("x-webhook-secret"),
                                          "body": json.loads(body or b"null")})
                time.sleep(delay)
                h.send_response(200)
                h.send_header("content-length", "0")
                h.end_headers()
            else:
                original(h)

        handler.do_POST = do_post


def test_a_slow_receiver_does_not_hold_back_the_others(hub):
    """Deliveries go out in parallel: while one receiver takes 4 s per delivery, another gets
    all of its deliveries (one webhook's deliveries still go one at a time, in turn)."""
    receiver = SlowReceiver(delay=4)
    try:
        admin = hub.auth(hub.server.admin_token)
        repo = hub.create_repo("hook-par")
        ids = []
        for path in ("/slow", "/fast"):
            r = hub.http.post("/api/settings/webhooks", headers=admin, json={
                "url": receiver.url + path, "watched": [{"type": "model", "name": repo}],
                "domains": ["repo"]})
            assert r.status_code == 200, r.text
            ids.append(r.json()["webhook"]["id"])
        shas = [hub.commit_files(repo, {f"{i}.txt": b"x"}) for i in range(3)]

        def commits_on(path):
            return {u.get("newSha") for r in receiver.on(path)
                    for u in (r["body"] or {}).get("updatedRefs", [])}

        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not set(shas) <= commits_on("/fast"):
            time.sleep(0.05)
        slow_so_far = len(receiver.on("/slow"))
        assert set(shas) <= commits_on("/fast"), receiver.on("/fast")
        # Sent one at a time behind the slow receiver, the fast one's third delivery would
        # come after the slow one's second had arrived (>= 8 s); in parallel, by then the
        # slow one has seen at most its first (the second follows 4 s later).
        assert slow_so_far <= 1, slow_so_far
        # The slow receiver still gets everything, in turn.
        deadline = time.monotonic() + 3 * WAIT_S
        while time.monotonic() < deadline and not set(shas) <= commits_on("/slow"):
            time.sleep(0.2)
        assert set(shas) <= commits_on("/slow")
        for wid in ids:
            hub.http.delete(f"/api/settings/webhooks/{wid}", headers=admin)
    finally:
        receiver.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(workdir: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed (EC P-256, made by the openssl
    CLI); returns (ca.pem, server.pem, server.key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *curve, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
             "-days", "2", "-subj", f"/CN=Trove test CA {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=workdir)
    _openssl("req", *curve, "-keyout", f"{name}-server.key", "-out", f"{name}-server.csr",
             "-subj", "/CN=127.0.0.1", cwd=workdir)
    (workdir / f"{name}-ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}-ca.pem",
             "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}-server.pem",
             "-days", "2", "-extfile", f"{name}-ext.cnf", cwd=workdir)
    return workdir / f"{name}-ca.pem", workdir / f"{name}-server.pem", workdir / f"{name}-server.key"


class TlsReceiver(Receiver):
    """The receiver behind TLS with the given certificate."""

    def __init__(self, cert: Path, key: Path):
        super().__init__()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory):
    """Two CAs, each with a server certificate, and a hub that trusts the first through
    `[webhooks] extra_ca_file`, with 2 attempts per delivery, the retry after 1 s."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl CLI to make certificates")
    work = tmp_path_factory.mktemp("webhook-tls")
    trusted = make_ca_and_server_cert(work, "trusted")
    other = make_ca_and_server_cert(work, "other")
    server = TroveServer("trove-webhook-tls", tmp_path_factory.mktemp("trove-webhook-tls"))
    server.data_dir.mkdir(parents=True, exist_ok=True)
    (server.data_dir / "trove.toml").write_text(
        f'[webhooks]\nextra_ca_file = "{trusted[0]}"\nmax_attempts = 2\nfirst_retry_secs = 1\n'
        'allowed_targets = ["127.0.0.1"]\n')
    server.start()
    yield server, trusted, other
    server.stop()


def test_https_deliveries_trust_the_extra_ca_file(tls_setup):
    server, trusted, other = tls_setup
    hub = Hub(server)
    good = TlsReceiver(trusted[1], trusted[2])
    untrusted = TlsReceiver(other[1], other[2])
    try:
        admin = hub.auth(server.admin_token)
        repo = hub.create_repo("hook-tls")
        ids = {}
        for name, rec in (("good", good), ("untrusted", untrusted)):
            r = hub.http.post("/api/settings/webhooks", headers=admin, json={
                "url": rec.url + "/tls", "watched": [{"type": "model", "name": repo}],
                "domains": ["repo"], "secret": "over-tls"})
            assert r.status_code == 200, r.text
            ids[name] = r.json()["webhook"]["id"]
        sha = hub.commit_files(repo, {"a.txt": b"a"})
        got = good.wait_for("/tls", lambda b: any(u.get("newSha") == sha
                                                  for u in b.get("updatedRefs", [])), "the commit")
        assert got["secret"] == "over-tls"
        assert got["body"]["repo"]["name"] == repo

        # A receiver whose CA is not trusted: each attempt fails in the TLS handshake, and
        # after `max_attempts = 2` the delivery is logged as failed; the hub keeps serving.
        deadline = time.monotonic() + WAIT_S
        failed = []
        while time.monotonic() < deadline and not failed:
            log = hub.http.get(f"/api/settings/webhooks/{ids['untrusted']}/deliveries",
                               headers=admin).json()
            failed = [e for e in log if e["state"] == "failed" and e["event"] == "update repo.content"]
            time.sleep(0.2)
        assert failed, log
        assert failed[0]["attempts"] == 2 and failed[0]["status"] is None
        assert "certificate" in failed[0]["error"].lower() or "tls" in failed[0]["error"].lower(), failed[0]
        assert untrusted.on("/tls") == []
        assert hub.http.get("/healthz").status_code == 200
        log = hub.http.get(f"/api/settings/webhooks/{ids['good']}/deliveries", headers=admin).json()
        assert any(e["state"] == "delivered" and e["status"] == 200 for e in log), log
    finally:
        good.close()
        untrusted.close()
        hub.close()
        server.check_alive()


def test_loopback_targets_are_refused_without_the_opt_in(tmp_path, receiver):
    """A hub started with `TROVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true` takes webhooks to the
    receiver on 127.0.0.1, by address and by the name `localhost`; restarted without it, the
    same webhooks deliver nothing — the name is refused on what it resolves to — and their log
    says why, while new ones to loopback are refused outright."""
    base = tmp_path / "ssrf"
    port = receiver.url.rsplit(":", 1)[1]
    targets = {"address": f"{receiver.url}/lit", "name": f"http://localhost:{port}/name"}
    watched = [{"type": "user", "name": "admin"}]
    opted_in = TroveServer("trove-webhook-opt-in", base,
                           {"TROVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"})
    opted_in.start()
    hub = Hub(opted_in)
    try:
        admin = hub.auth(opted_in.admin_token)
        ids = {}
        for kind, url in targets.items():
            r = hub.http.post("/api/settings/webhooks", headers=admin, json={
                "url": url, "watched": watched, "domains": ["repo"]})
            assert r.status_code == 200, r.text
            ids[kind] = r.json()["webhook"]["id"]
    finally:
        hub.close()
        opted_in.stop()

    server = TroveServer("trove-webhook-default", base)
    server.start()
    hub = Hub(server)
    try:
        admin = hub.auth(server.admin_token)
        for url in (*targets.values(), f"http://[::1]:{port}/x", "http://169.254.169.254/latest/meta-data/"):
            r = hub.http.post("/api/settings/webhooks", headers=admin, json={
                "url": url, "watched": watched})
            assert r.status_code == 400, (url, r.status_code, r.text)
            assert r.headers.get("x-error-code") == "WebhookTargetNotAllowed", r.headers
            assert "is not allowed" in r.headers.get("x-error-message", ""), r.headers
        assert sorted(w["id"] for w in hub.http.get("/api/settings/webhooks", headers=admin).json()) \
            == sorted(ids.values())

        repo = hub.create_repo("hook-ssrf")
        hub.commit_files(repo, {"a.txt": b"a"})
        expected = {
            "address": "the target address 127.0.0.1 is not allowed: loopback",
            "name": "the target host localhost is not allowed: it resolves only to loopback addresses",
        }
        deadline = time.monotonic() + WAIT_S
        logged: dict[str, dict] = {}
        while time.monotonic() < deadline and len(logged) < len(ids):
            for kind, wid in ids.items():
                log = hub.http.get(f"/api/settings/webhooks/{wid}/deliveries", headers=admin).json()
                tried = [e for e in log if e["event"] == "update repo.content" and e["attempts"] >= 1]
                if tried:
                    logged[kind] = tried[0]
            time.sleep(0.2)
        assert len(logged) == len(ids), logged
        for kind, entry in logged.items():
            assert entry["error"] == expected[kind], entry
            assert entry["status"] is None and entry["state"] in ("pending", "failed"), entry
        assert receiver.received == [], receiver.received
    finally:
        hub.close()
        server.stop()
