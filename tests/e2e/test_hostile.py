"""Hostile input against the real binary: a corpus generated in loops (paths, revisions,
cards, bodies, headers), each case answered with a 4xx (or 200 where the rule is to ignore
the input), never a 5xx, within 5 s, with the server's memory bounded and the target
repository unchanged.

The server is this module's own, so its memory and its per-address limiters are not shared
with other tests.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest

from conftest import Hub, _start, b64, ndjson

ANSWER_WITHIN_S = 5.0
# Growth of the server's resident anonymous memory over the whole corpus; the card budget
# alone keeps any one card under 16 MiB.
RSS_GROWTH_LIMIT_KIB = 128 * 1024
FILE = b"0123456789abcdefghij\n"

@dataclass
class Case:
    id: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    # Statuses accepted; None means any 4xx.
    expect: tuple[int, ...] | None = None
    # The body is sent with this Content-Length instead of its own (over a raw socket).
    content_length: int | None = None
    token: bool = True


def enc(s: str, safe: str = "") -> str:
    """Percent-encodes `s`, dots included, so that no client normalises `..` away before
    the server sees it."""
    return quote(s, safe=safe).replace(".", "%2E")


# --------------------------------------------------------------------------------------------
# The corpus. `{repo}` is replaced by the target repository, created per session.
# --------------------------------------------------------------------------------------------

# Paths a commit must refuse (RepoPath).
BAD_COMMIT_PATHS = [
    "", "/etc/passwd", "../config", "a/../../config", "./a", "a/.", "a//b", "a/",
    ".git/config", ".GIT/config", ".Git/HEAD",
    ".git./config", ".git../config", ".git /config", ".git . /config", "GIT~1/config",
    "git~1/hooks/x", ".git::$INDEX_ALLOCATION/config", ".git:stream", ".GIT.:x",
    ".git\u200c/config", ".g\u200dit/config", "\ufeff.git/config", ".gi\u200et", "\u202e.git",
    ".\u200c./x", "a\\b", "..\\..\\x", "a\0", "a\x01b", "a\nb", "a\rb", "a\tb", "a\x7f",
    "a\u0085b", "x" * 256, "d/" + "y" * 300, "\u00e9" * 128, "a/" * 2100 + "b",
]

# Paths in URLs: the above plus encodings a URL parser might trip on.
URL_PATHS = [p for p in BAD_COMMIT_PATHS if p] + [
    "%00", "config%00", "%ff%fe", "%", "%zz", "a" * 5000, "..%2f..%2fconfig", "%2e%2e",
]

BAD_REVISIONS = [
    "\0", "main\0", "main\n", "\r\n", "a" * 256, "a" * 5000, "-main", "--upload-pack=x",
    "main..dev", "HEAD~1", "main^", "@{-1}", "refs/heads/../x", "..", ":/", "*", "\u202e",
    "refs/heads/main\0", " ", "main ",
]

def _alias_bomb() -> str:
    yaml = "---\nlicense: mit\na: &a \"" + "x" * 20_000 + "\"\nb: [" + ",".join(["*a"] * 2500) + "]\n---\n"
    return yaml


def _laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = "a" if i == 1 else f"l{i - 1}"
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "---\n" + "\n".join(lines) + "\n---\n"


HOSTILE_CARDS = {
    "alias-quadratic": _alias_bomb(),
    "billion-laughs": _laughs(),
    "deep-flow-100k": "---\ntags: " + "[" * 100_000 + "]" * 100_000 + "\n---\n",
    "deep-flow-80k": "---\ntags: " + "[" * 80_000 + "]" * 80_000 + "\n---\n",
    "deep-block": "---\n" + "- " * 50_000 + "x\n---\n",
    "deep-mapping": "---\n" + "".join(" " * i + f"k{i}:\n" for i in range(400)) + "---\n",
    "900KB": "---\ndescription: \"" + "y" * 900_000 + "\"\n---\n",
    "many-values": "---\ntags: [" + ",".join(["t"] * 120_000) + "]\n---\n",
    "recursive-alias": "---\na: &a [*a]\n---\n",
    "unknown-alias": "---\na: *nowhere\n---\n",
    "python-tag": "---\na: !!python/object/apply:os.system [\"id\"]\n---\n",
    "binary-tag": "---\na: !!binary aGVsbG8=\n---\n",
    "merge-keys": "---\nbase: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n---\n",
    "two-documents": "---\na: 1\n---\nb: 2\n...\n---\n",
    "not-a-mapping": "---\n- a\n- b\n---\n",
    "tabs": "---\na:\n\t- b\n---\n",
    "unclosed-flow": "---\na: [b, {c: d\n---\n",
    "huge-key": "---\n" + "k" * 200_000 + ": v\n---\n",
    "non-string-keys": "---\n[a, b]: c\n? {x: 1}\n: y\n---\n",
    "control-chars": "---\na: \"\x01\x02\"\n---\n",
    "bom-and-crlf": "\ufeff---\r\nlicense: mit\r\n---\r\n",
    "empty": "---\n---\n",
}


def _commit_body(*ops: str) -> bytes:
    return ("\n".join([ndjson("header", summary="hostile", description=""), *ops]) + "\n").encode()


def corpus() -> list[Case]:
    cases: list[Case] = []

    # Paths: resolve, tree, paths-info.
    for i, p in enumerate(URL_PATHS):
        for how, safe in (("enc", ""), ("raw", "/")):
            cases.append(Case(f"resolve-{how}-{i}", "GET", f"/{{repo}}/resolve/main/{enc(p, safe)}",
                              expect=(400, 404)))
        cases.append(Case(f"tree-{i}", "GET", f"/api/models/{{repo}}/tree/main/{enc(p)}",
                          expect=(400, 404)))
        cases.append(Case(f"paths-info-{i}", "POST", "/api/models/{repo}/paths-info/main",
                          headers={"content-type": "application/x-www-form-urlencoded"},
                          body=("paths=" + enc(p)).encode(), expect=(200, 400)))

    # Paths: every commit operation that names one.
    for i, p in enumerate(BAD_COMMIT_PATHS):
        ops = {
            "file": ndjson("file", path=p, content=b64(b"x"), encoding="base64"),
            "lfsFile": ndjson("lfsFile", path=p, algo="sha256", oid="a" * 64, size=1),
            "deletedFile": ndjson("deletedFile", path=p),
            "deletedFolder": ndjson("deletedFolder", path=p),
        }
        for op, line in ops.items():
            if op == "deletedFolder" and p == "a/":
                continue  # a folder may end with '/'
            cases.append(Case(f"commit-{op}-{i}", "POST", "/api/models/{repo}/commit/main",
                              headers={"content-type": "application/x-ndjson"},
                              body=_commit_body(line), expect=(422,)))

    # Revisions: every route that takes one.
    for i, rev in enumerate(BAD_REVISIONS):
        r = enc(rev)
        # A NUL would panic in git2 and thousands of bytes overflow its ref-name
        # normalisation: both are refused at the edge (`Revision`).
        for name, method, path in (
            ("tree", "GET", f"/api/models/{{repo}}/tree/{r}"),
            ("tree-path", "GET", f"/api/models/{{repo}}/tree/{r}/file.txt"),
            ("resolve", "GET", f"/{{repo}}/resolve/{r}/file.txt"),
            ("commits", "GET", f"/api/models/{{repo}}/commits/{r}"),
            ("info", "GET", f"/api/models/{{repo}}/revision/{r}"),
            ("paths-info", "POST", f"/api/models/{{repo}}/paths-info/{r}"),
        ):
            cases.append(Case(f"rev-{name}-{i}", method, path, expect=(400, 404)))
        cases.append(Case(f"rev-commit-{i}", "POST", f"/api/models/{{repo}}/commit/{r}",
                          headers={"content-type": "application/x-ndjson"},
                          body=_commit_body(ndjson("file", path="new.txt", content=b64(b"x"),
                                                   encoding="base64")),
                          expect=(400, 404)))

    # Cards through validate-yaml: a verdict (200, or 400 with errors), never a fault.
    for name, text in HOSTILE_CARDS.items():
        for repo_type in ("model", "dataset", "space"):
            cases.append(Case(f"validate-{repo_type}-{name}", "POST", "/api/validate-yaml",
                              headers={"content-type": "application/json"},
                              body=json.dumps({"content": text, "repoType": repo_type}).encode(),
                              expect=(200, 400)))

    # Bodies that claim to be huge: answered before they are read.
    json_endpoints = [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/repos/move"),
        ("PUT", "/api/models/{repo}/settings"),
        ("POST", "/api/models/{repo}/preupload/main"),
        ("POST", "/api/models/{repo}/branch/hostile-branch"),
        ("POST", "/api/models/{repo}/discussions"),
        ("POST", "/api/models/{repo}/paths-info/main"),
        ("POST", "/{repo}.git/info/lfs/objects/batch"),
        ("POST", "/api/models/{repo}/commit/main"),
    ]
    for method, path in json_endpoints:
        cases.append(Case(f"huge-length-{method}-{path}", method, path,
                          headers={"content-type": "application/json"}, body=b"{",
                          content_length=1_000_000_000_000, expect=(413,)))

    # Bodies that are not what they claim to be.
    bad_json = [b"", b"{", b"[]", b"null", b"\xff\xfe\x00", b'{"name": 1}', b'"x"',
                b"[" * 100_000, b'{"a":' * 10_000, b"{}" * 1000]
    # Not here: branch creation (an empty body is a valid request) and paths-info (a read).
    for method, path in json_endpoints[:5] + json_endpoints[6:7]:
        for j, body in enumerate(bad_json):
            if path.endswith("/settings") and body.startswith(b'{"name"'):
                continue  # settings ignore fields they do not know
            cases.append(Case(f"bad-json-{j}-{method}-{path}", method, path,
                              headers={"content-type": "application/json"}, body=body))
    bad_ndjson = [
        b"", b"\n", b"{\n", b"not json\n", b"\n" * 10_000, b"\0\0\0\n",
        ndjson("file", path="x", content="eA==", encoding="base64").encode() + b"\n",  # no header
        _commit_body(ndjson("header", summary="twice", description="")),
        _commit_body(ndjson("unknown", path="x")),
        _commit_body(ndjson("file", path="x", content="!!!", encoding="base64")),
        _commit_body(ndjson("file", path="x", content="eA==", encoding="rot13")),
        _commit_body(ndjson("file", path="x")),
        _commit_body(ndjson("lfsFile", path="x", algo="sha256", oid="zz", size=1)),
        _commit_body(ndjson("lfsFile", path="x", algo="md5", oid="a" * 64, size=1)),
        _commit_body(ndjson("lfsFile", path="x", algo="sha256", oid="a" * 64, size=-1)),
        _commit_body(ndjson("lfsFile", path="x", algo="sha256", oid="b" * 64, size=5)),  # not uploaded
        _commit_body(ndjson("deletedFile", path="no-such-file")),
        _commit_body(ndjson("copyFile", srcPath="nope", path="x", srcRevision="main")),
        _commit_body('{"key": "file", "value": ' + "[" * 10_000 + "]" * 10_000 + "}"),
        _commit_body(ndjson("file", path="x", content=5, encoding="base64")),
        _commit_body(ndjson("file", path=["x"], content=b64(b"x"), encoding="base64")),
    ]
    for j, body in enumerate(bad_ndjson):
        cases.append(Case(f"bad-ndjson-{j}", "POST", "/api/models/{repo}/commit/main",
                          headers={"content-type": "application/x-ndjson"}, body=body))
        cases.append(Case(f"bad-ndjson-gzip-{j}", "POST", "/api/models/{repo}/commit/main",
                          headers={"content-type": "application/x-ndjson",
                                   "content-encoding": "gzip"}, body=gzip.compress(body)))
    for j, body in enumerate([b"not gzip", b"\x1f\x8b\x08\x00garbage", gzip.compress(b"{")[:-4]]):
        cases.append(Case(f"bad-gzip-create-{j}", "POST", "/api/repos/create",
                          headers={"content-type": "application/json",
                                   "content-encoding": "gzip"}, body=body))
        cases.append(Case(f"bad-gzip-commit-{j}", "POST", "/api/models/{repo}/commit/main",
                          headers={"content-type": "application/x-ndjson",
                                   "content-encoding": "gzip"}, body=body))
    # 200 MiB of zeros in 200 KB: refused, never inflated in memory.
    bomb = gzip.compress(b"\0" * (200 << 20), compresslevel=9)
    cases.append(Case("gzip-bomb-commit", "POST", "/api/models/{repo}/commit/main",
                      headers={"content-type": "application/x-ndjson",
                               "content-encoding": "gzip"}, body=bomb, expect=(400, 413)))
    cases.append(Case("gzip-bomb-upload-pack", "POST", "/{repo}.git/git-upload-pack",
                      headers={"content-type": "application/x-git-upload-pack-request",
                               "content-encoding": "gzip"}, body=bomb, expect=(400, 413)))
    # The same size as valid pkt-lines (flush packets), which git reads to the end.
    flushes = gzip.compress(b"0000" * (50 << 20), compresslevel=9)
    cases.append(Case("gzip-bomb-upload-pack-pktlines", "POST", "/{repo}.git/git-upload-pack",
                      headers={"content-type": "application/x-git-upload-pack-request",
                               "content-encoding": "gzip"}, body=flushes, expect=(400, 413)))

    # Range (docs/errors.md): unparsable is ignored (200, whole body); a valid range that
    # selects nothing is 416 — past the end (an overlong number saturates there), or last <
    # first; whitespace around the unit and the spec is tolerated.
    ignored = ["bytes=abc", "bytes=", "bytes=,", "bytes=5", "bytes=--1",
               "chars=0-1", "bytes=0-1x", "bytes=-", "bytes=0-1,,", "\u00ff"]
    for j, value in enumerate(ignored):
        cases.append(Case(f"range-ignored-{j}", "GET", "/{repo}/resolve/main/file.txt",
                          headers={"range": value.encode("latin-1")}, expect=(200,)))
    cases.append(Case("range-spaced", "GET", "/{repo}/resolve/main/file.txt",
                      headers={"range": "bytes = 0-1"}, expect=(206,)))
    for j, value in enumerate(["bytes=1000-", "bytes=21-", "bytes=99999999999-100000000000",
                               "bytes=1-0", "bytes=18446744073709551616-"]):
        cases.append(Case(f"range-unsatisfiable-{j}", "GET", "/{repo}/resolve/main/file.txt",
                          headers={"range": value}, expect=(416,)))

    # Authorization garbage: refused (401, or 429 once the address is out of budget).
    bad_auth = [b"Bearer", b"Bearer hf_ x", b"Bearer ,", b"Basic !!!", b"Basic " + base64.b64encode(b"x"),
                b"Basic " + base64.b64encode(b":"), b"Bearer " + b"a" * 10_000, b"Digest x",
                b"Token x", b"Bearer hf_\xc3\xa9", b"\xff\xfe", b"Bearer hf_" + b"0" * 40,
                b"Basic " + base64.b64encode(b"admin:" + b"\xff" * 10)]
    for j, value in enumerate(bad_auth):
        for name, path in (("info", "/api/models/{repo}"), ("whoami", "/api/whoami-v2"),
                           ("resolve", "/{repo}/resolve/main/file.txt")):
            cases.append(Case(f"auth-{name}-{j}", "GET", path, headers={"authorization": value},
                              expect=(401, 429), token=False))
    return cases


CORPUS = corpus()


# --------------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Without backtraces: symbolizing one (should a panic ever be caught) reads
    # the binary's debug info into the heap and would hide the growth this module measures.
    s = _start(tmp_path_factory, "trove-hostile", {"RUST_BACKTRACE": "0"})
    yield s
    s.stop()


@dataclass
class Target:
    hub: Hub
    repo: str
    pid: int
    rss_start_kib: int
    head: str
    tree: list


def rss_kib(pid: int) -> int:
    """Resident anonymous memory (heap, stacks): what requests allocate. VmRSS would also
    count the binary's pages, which a panic's backtrace pulls in by reading debug info."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


def snapshot(hub: Hub, repo: str) -> tuple[str, list]:
    head = hub.head_sha(repo)
    tree = hub.http.get(f"/api/models/{repo}/tree/main?recursive=true",
                        headers=hub.auth(hub.token()))
    assert tree.status_code == 200
    refs = hub.http.get(f"/api/models/{repo}/refs", headers=hub.auth(hub.token()))
    assert refs.status_code == 200
    return head, [tree.json(), refs.json()]


@pytest.fixture(scope="module")
def target(server):
    hub = Hub(server)
    repo = hub.create_repo("hostile")
    hub.commit_files(repo, {"file.txt": FILE, "README.md": b"---\nlicense: mit\n---\n# T\n"})
    head, tree = snapshot(hub, repo)
    yield Target(hub, repo, server.proc.pid, rss_kib(server.proc.pid), head, tree)
    hub.close()


def send_raw(url: str, case: Case, path: str, token: str) -> int:
    """Sends headers claiming `case.content_length` bytes and only part of the body; returns
    the status, or raises TimeoutError if nothing came back in time."""
    u = urlsplit(url)
    head = [f"{case.method} {path} HTTP/1.1", f"Host: {u.netloc}",
            f"Content-Length: {case.content_length}", f"Authorization: Bearer {token}"]
    head += [f"{k}: {v}" for k, v in case.headers.items()]
    with socket.create_connection((u.hostname, u.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (case.body or b""))
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
    assert status_line.startswith("HTTP/1.1 "), repr(data[:200])
    return int(status_line.split()[1])


def params():
    out = []
    for case in CORPUS:
        out.append(pytest.param(case, id=case.id[:80]))
    return out


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 300, len(CORPUS)
    assert len({c.id for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", params())
def test_hostile_input(server, target, case: Case):
    hub = target.hub
    path = case.path.replace("{repo}", target.repo)
    headers = dict(case.headers)
    if case.token:
        headers["authorization"] = f"Bearer {hub.token()}"
    start = time.monotonic()
    if case.content_length is not None:
        try:
            status = send_raw(hub.url, case, path, hub.token())
        except (TimeoutError, socket.timeout):
            pytest.fail(f"no answer within {ANSWER_WITHIN_S}s")
    else:
        r = hub.http.request(case.method, path, headers=headers, content=case.body,
                             timeout=ANSWER_WITHIN_S + 5)
        status = r.status_code
    took = time.monotonic() - start
    server.check_alive()
    assert status < 500, f"{case.method} {path[:200]}: {status}"
    if case.expect is None:
        assert 400 <= status < 500, f"{case.method} {path[:200]}: {status}"
    else:
        assert status in case.expect, f"{case.method} {path[:200]}: {status}, expected {case.expect}"
    if case.id.startswith("range-ignored"):
        assert r.content == FILE
    assert took < ANSWER_WITHIN_S, f"took {took:.1f}s"
    grown = rss_kib(target.pid) - target.rss_start_kib
    assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB"
    if case.method != "GET":
        assert snapshot(hub, target.repo) == (target.head, target.tree), "the repo changed"


# --------------------------------------------------------------------------------------------
# Cards committed: the commit succeeds, the card is refused with a warning, reads stay fast
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alias-quadratic", "deep-flow-100k", "900KB", "many-values",
                                  "billion-laughs", "recursive-alias", "deep-block"])
def test_hostile_card_commits_with_a_warning_and_reads_stay_fast(server, target, name):
    hub = target.hub
    repo = hub.create_repo("hostile-card")
    start = time.monotonic()
    hub.commit_files(repo, {"README.md": HOSTILE_CARDS[name].encode()})
    assert time.monotonic() - start < ANSWER_WITHIN_S
    for anonymous in (False, True) * 3:
        start = time.monotonic()
        r = hub.http.get(f"/api/models/{repo}",
                         headers={} if anonymous else hub.auth(hub.token()))
        assert time.monotonic() - start < 1.0
        assert r.status_code == 200
        info = r.json()
        assert "cardData" not in info
        assert any("README.md metadata ignored" in w for w in info["cardWarnings"]), info
        assert r.headers["x-hf-warning"].startswith("card;")
    grown = rss_kib(target.pid) - target.rss_start_kib
    assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB"


def test_anonymous_validate_yaml_is_rate_limited(server, target):
    hub = target.hub
    body = {"content": HOSTILE_CARDS["alias-quadratic"], "repoType": "model"}
    statuses = [hub.http.post("/api/validate-yaml", json=body).status_code for _ in range(60)]
    assert set(statuses) <= {400, 429}, statuses  # an over-budget card is refused
    assert 429 in statuses, statuses
    limited = hub.http.post("/api/validate-yaml", json=body)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    ok = hub.http.post("/api/validate-yaml", json=body, headers=hub.auth(hub.token()))
    assert ok.status_code == 400 and ok.json()["errors"], ok.text[:300]


def test_target_unchanged_and_memory_bounded_after_the_corpus(server, target):
    assert snapshot(target.hub, target.repo) == (target.head, target.tree)
    grown = rss_kib(target.pid) - target.rss_start_kib
    assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB"
    server.check_alive()
