"""Spaces end to end: apps pushed to a Space are built, served under /spaces/{repo}/app/ and
rebuilt on every change of main, with the runtime API of huggingface_hub.

Python Spaces install their SDK from PyPI through the server's pinned uv; the package cache
(TROVE_SPACES_CACHE, default ~/.cache/trove-tools/spaces) persists across runs so that only
the first run downloads gradio and streamlit. The gradio and streamlit tests are the heavy
ones; every other Python Space here runs a plain http.server app under the gradio SDK (its
environment comes from the same cache), so it starts in a second.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from browser import chromium, new_page, shot  # noqa: F401 - chromium is a fixture
from conftest import Hub, TroveServer, _start, httpx

CACHE = os.environ.get("TROVE_SPACES_CACHE") or str(Path.home() / ".cache/trove-tools/spaces")
BUILD_TIMEOUT_S = 900  # a first gradio install downloads ~100 MB
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def run_dir():
    """Where apps' revisions live: outside the data dir (pytest's folders are private to
    root), reachable by the unprivileged user apps run as when the tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="trove-spaces-run-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Per-Space subdomains: `{ns}-{name}.spaces.test` (reached with a Host header on 127.0.0.1).
SUBDOMAIN_BASE = "spaces.test"


def spaces_env(run_dir: Path) -> dict[str, str]:
    return {"TROVE_SPACES_CACHE": CACHE, "TROVE_SPACES_RUN_DIR": str(run_dir),
            "TROVE_SPACES_SUBDOMAIN_BASE": SUBDOMAIN_BASE}


def subdomain_host(hub: Hub, repo: str) -> dict[str, str]:
    """The Host header of a Space's own origin: `{ns}-{name}` lowercased, `_` and `.` as `-`."""
    label = repo.replace("/", "-").replace("_", "-").replace(".", "-").lower()
    port = hub.url.rsplit(":", 1)[1]
    return {"host": f"{label}.{SUBDOMAIN_BASE}:{port}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, run_dir):
    server = _start(tmp_path_factory, "trove-spaces", spaces_env(run_dir))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(server):
    h = Hub(server)
    yield h
    h.close()
    server.check_alive()


def card(sdk: str, **extra: str) -> bytes:
    lines = [f"sdk: {sdk}"] + [f"{k}: {v}" for k, v in extra.items()]
    return ("---\ntitle: demo\n" + "\n".join(lines) + "\n---\n# demo\n").encode()


# An app for the gradio SDK that does not import gradio: it answers on the port gradio
# would use, printing what the test asks.
PLAIN_APP = textwrap.dedent('''
    import os, http.server
    BODY = os.environ.get("BODY_FROM_ENV") and os.environ.get(os.environ["BODY_FROM_ENV"], "unset") or %r
    if os.environ.get("READ_PATH"):
        try:
            open(os.environ["READ_PATH"], "rb").read()
            BODY = "readable"
        except OSError as e:
            BODY = "denied " + type(e).__name__
        BODY += " uid=%%d home=%%s" %% (os.getuid(), os.environ["HOME"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = BODY.encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
''')


def plain_app(body: str) -> bytes:
    return (PLAIN_APP % body).encode()


def runtime(hub: Hub, repo: str, token=None) -> httpx.Response:
    tok = hub.server.admin_token if token is None else token
    return hub.http.get(f"/api/spaces/{repo}/runtime", headers=hub.auth(tok))


def wait_stage(hub: Hub, repo: str, wanted: set[str], timeout: float = BUILD_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = runtime(hub, repo)
        assert r.status_code == 200, r.text
        last = r.json()
        if last["stage"] in wanted:
            return last
        time.sleep(0.5)
    pytest.fail(f"{repo}: stage {last} after {timeout}s, wanted {wanted}\n{hub.server.log_tail()}")


def build_log(hub: Hub, repo: str, until: str, timeout: float = 30, kind: str = "build") -> str:
    """A log through the SSE endpoint, read until `until` appears (bounded)."""
    text = ""
    deadline = time.monotonic() + timeout
    with hub.http.stream("GET", f"/api/spaces/{repo}/logs/{kind}",
                         headers=hub.auth(hub.server.admin_token), timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                text += json.loads(line[5:])["data"] + "\n"
            if until in text or time.monotonic() > deadline:
                break
    return text


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaped yet does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def app_get(hub: Hub, repo: str, path: str = "", token=None) -> httpx.Response:
    tok = hub.server.admin_token if token is None else token
    return hub.http.get(f"/spaces/{repo}/app/{path}", headers=hub.auth(tok))


def test_a_static_space_is_served_after_a_push(hub, tmp_path):
    repo = hub.create_repo("static", repo_type="space", sdk="static")
    assert runtime(hub, repo).json()["stage"] == "NO_APP_FILE"
    work = tmp_path / "clone"
    token = hub.server.admin_token
    host = hub.url.split("://", 1)[1]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", "clone", "-q", f"http://admin:{token}@{host}/spaces/{repo}", str(work)],
                   check=True, env=env, timeout=60)
    (work / "README.md").write_bytes(card("static", app_file="main.html"))
    (work / "main.html").write_text("<h1>hello static</h1>")
    (work / "css").mkdir()
    (work / "css" / "site.css").write_text("h1 { color: red }")
    for cmd in (["git", "add", "."], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "app"],
                ["git", "push", "-q", "origin", "HEAD:main"]):
        subprocess.run(cmd, cwd=work, check=True, env=env, timeout=60)
    wait_stage(hub, repo, {"RUNNING"}, timeout=60)
    r = app_get(hub, repo)
    assert r.status_code == 200 and "hello static" in r.text
    assert r.headers["content-type"].startswith("text/html")
    css = app_get(hub, repo, "css/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert app_get(hub, repo, "css/../../x").status_code == 404
    assert app_get(hub, repo, "missing.html").status_code == 404
    # The runtime through the client, and in space_info / list_spaces(expand=["runtime"]).
    r = hub.http.get(f"/api/spaces/{repo}", headers=hub.auth(token))
    assert r.json()["runtime"]["stage"] == "RUNNING"
    page = hub.http.get(f"/spaces/{repo}", headers=hub.auth(token))
    assert page.status_code == 200
    assert 'id="space-stage">RUNNING<' in page.text and f'<iframe src="/spaces/{repo}/app/"' in page.text
    assert "build done" in page.text  # the build log's tail
    no_slash = hub.http.get(f"/spaces/{repo}/app", headers=hub.auth(token))
    assert no_slash.status_code == 307 and no_slash.headers["location"] == f"/spaces/{repo}/app/"


def test_a_private_space_is_404_to_outsiders_at_every_url(hub, server):
    repo = hub.create_repo("private", repo_type="space", private=True)
    hub.commit_files(repo, {"README.md": card("static"), "index.html": b"secret app"}, repo_type="space")
    wait_stage(hub, repo, {"RUNNING"}, timeout=60)
    assert "secret app" in app_get(hub, repo).text
    name = f"outsider{int(time.time() * 1000) % 10**9}"
    server.create_user(name)
    outsider = server.create_token(name, role="write")
    for path in (f"/spaces/{repo}/app/", f"/spaces/{repo}/app/index.html", f"/spaces/{repo}/app",
                 f"/api/spaces/{repo}/runtime", f"/api/spaces/{repo}/logs/build", f"/spaces/{repo}",
                 f"/api/spaces/{repo}/variables"):
        r = hub.http.get(path, headers=hub.auth(outsider))
        assert r.status_code == 404, (path, r.status_code)
        anonymous = hub.http.get(path)
        assert anonymous.status_code in (401, 404), (path, anonymous.status_code)
        assert "secret app" not in anonymous.text and "secret app" not in r.text
    r = hub.http.post(f"/api/spaces/{repo}/restart", headers=hub.auth(outsider))
    assert r.status_code == 404


def test_failing_requirements_give_build_error_with_the_installer_log(hub):
    repo = hub.create_repo("builderr", repo_type="space", sdk="gradio")
    hub.commit_files(repo, {
        "README.md": card("gradio"),
        "app.py": plain_app("never"),
        "requirements.txt": b"trove-e2e-no-such-package-xyz==1.0\n",
    }, repo_type="space")
    rt = wait_stage(hub, repo, {"BUILD_ERROR", "RUNNING", "RUNTIME_ERROR"})
    assert rt["stage"] == "BUILD_ERROR", rt
    log = build_log(hub, repo, "BUILD FAILED")
    assert "trove-e2e-no-such-package-xyz" in log, log
    assert "BUILD FAILED" in log
    assert app_get(hub, repo).status_code == 503
    hub.server.check_alive()


def test_a_push_is_swapped_in_without_a_failed_request(hub):
    repo = hub.create_repo("swap", repo_type="space", sdk="gradio")
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("version one")},
                     repo_type="space")
    wait_stage(hub, repo, {"RUNNING"})
    assert app_get(hub, repo).text == "version one"
    hub.commit_files(repo, {"app.py": plain_app("version two")}, repo_type="space")
    seen = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        r = app_get(hub, repo)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        seen.add(r.text)
        if r.text == "version two":
            break
        time.sleep(0.05)
    assert seen <= {"version one", "version two"} and "version two" in seen, seen
    wait_stage(hub, repo, {"RUNNING"}, timeout=30)


def test_a_crashing_app_is_runtime_error_and_the_hub_keeps_serving(hub):
    repo = hub.create_repo("crash", repo_type="space", sdk="gradio")
    hub.commit_files(repo, {"README.md": card("gradio"),
                            "app.py": b"print('about to fail')\nraise SystemExit(3)\n"},
                     repo_type="space")
    rt = wait_stage(hub, repo, {"RUNTIME_ERROR", "RUNNING"})
    assert rt["stage"] == "RUNTIME_ERROR", rt
    assert "exited" in rt.get("errorMessage", "")
    assert hub.http.get("/healthz").status_code == 200


def test_memory_past_the_limit_is_stopped_and_reported(hub):
    repo = hub.create_repo("memory", repo_type="space", sdk="gradio")
    # 64 GiB of address space: far past the default limit (4 GiB).
    hub.commit_files(repo, {"README.md": card("gradio"),
                            "app.py": b"block = bytearray(64 * 2**30)\nprint('allocated')\n"},
                     repo_type="space")
    rt = wait_stage(hub, repo, {"RUNTIME_ERROR", "RUNNING"})
    assert rt["stage"] == "RUNTIME_ERROR", rt
    assert "MemoryError" in build_log(hub, repo, "MemoryError", kind="run")
    assert hub.http.get("/healthz").status_code == 200
    hub.server.check_alive()


def test_secrets_reach_the_app_and_no_api_returns_them(hub):
    from huggingface_hub import HfApi
    repo = hub.create_repo("secrets", repo_type="space", sdk="gradio")
    api = HfApi(endpoint=hub.url, token=hub.server.admin_token)
    secret = "s3cr3t-value-" + str(time.time_ns())
    api.add_space_secret(repo, "MY_SECRET", secret, description="for the test")
    api.add_space_variable(repo, "MY_VAR", "visible", description="shown")
    assert api.get_space_variables(repo)["MY_VAR"].value == "visible"
    secrets = api.get_space_secrets(repo)
    assert "MY_SECRET" in secrets and secrets["MY_SECRET"].description == "for the test"
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("x")},
                     repo_type="space")
    api.add_space_variable(repo, "BODY_FROM_ENV", "MY_SECRET")
    wait_stage(hub, repo, {"RUNNING"})
    deadline = time.monotonic() + START_TIMEOUT_S
    while app_get(hub, repo).text != secret and time.monotonic() < deadline:
        time.sleep(0.3)
    assert app_get(hub, repo).text == secret
    for path in (f"/api/spaces/{repo}", f"/api/spaces/{repo}/runtime", f"/api/spaces/{repo}/secrets",
                 f"/api/spaces/{repo}/variables", f"/spaces/{repo}", f"/api/spaces?full=true&expand=runtime"):
        r = hub.http.get(path, headers=hub.auth(hub.server.admin_token))
        assert secret not in r.text, path
    api.delete_space_secret(repo, "MY_SECRET")
    assert "MY_SECRET" not in api.get_space_secrets(repo)
    bad = hub.http.post(f"/api/spaces/{repo}/secrets", json={"key": "1BAD", "value": "x"},
                        headers=hub.auth(hub.server.admin_token))
    assert bad.status_code == 400 and bad.headers.get("x-error-message")


def test_runtime_management_through_the_client(hub):
    from huggingface_hub import HfApi
    repo = hub.create_repo("manage", repo_type="space", sdk="static")
    hub.commit_files(repo, {"README.md": card("static"), "index.html": b"managed"}, repo_type="space")
    api = HfApi(endpoint=hub.url, token=hub.server.admin_token)
    wait_stage(hub, repo, {"RUNNING"}, timeout=60)
    assert api.get_space_runtime(repo).stage == "RUNNING"
    assert api.space_info(repo).runtime.stage == "RUNNING"
    assert api.pause_space(repo).stage == "PAUSED"
    assert app_get(hub, repo).status_code == 503
    assert api.set_space_sleep_time(repo, 3600).sleep_time == 3600
    api.restart_space(repo)
    wait_stage(hub, repo, {"RUNNING"}, timeout=60)
    assert app_get(hub, repo).text == "managed"
    r = hub.http.post(f"/api/spaces/{repo}/sleeptime", json={"seconds": -5},
                      headers=hub.auth(hub.server.admin_token))
    assert r.status_code == 400


@pytest.fixture(scope="module")
def gradio_space(hub):
    """A running Gradio Space that reverses text."""
    repo = hub.create_repo("gradio", repo_type="space", sdk="gradio")
    app = textwrap.dedent('''
        import gradio as gr
        def reverse(text):
            return text[::-1]
        gr.Interface(fn=reverse, inputs="text", outputs="text", title="Reverser").launch()
    ''').encode()
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": app}, repo_type="space")
    rt = wait_stage(hub, repo, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert rt["stage"] == "RUNNING", (rt, build_log(hub, repo, "build done", timeout=5))
    return repo


def test_a_gradio_space_answers_through_the_proxy(hub, gradio_space):
    repo = gradio_space
    from gradio_client import Client
    client = Client(f"{hub.url}/spaces/{repo}/app/", verbose=False)
    # The endpoint is named after the function by newer gradio, "/predict" by older ones.
    assert client.predict("trove", fn_index=0) == "evort"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
             "--dump-dom", f"{hub.url}/spaces/{repo}/app/"],
            capture_output=True, text=True, timeout=120).stdout
        assert "Reverser" in dom, dom[-2000:]


def test_gradio_client_finds_a_space_by_its_name(hub, gradio_space):
    """`gradio_client.Client("ns/name")` with `HF_ENDPOINT` set, as on the Hub: it reads the
    Space's `host` from `space_info` and calls the app there."""
    code = ("import sys; from gradio_client import Client; "
            "print(Client(sys.argv[1], verbose=False).predict('trove', fn_index=0))")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token()}
    done = subprocess.run([sys.executable, "-c", code, gradio_space], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "evort"
    info = hub.http.get(f"/api/spaces/{gradio_space}", headers=hub.auth(hub.token())).json()
    assert info["host"] == f"{hub.url}/spaces/{gradio_space}/app/"
    # This module's hub also serves Spaces on their own domains: the label is named too.
    assert info["subdomain"] == gradio_space.replace("/", "-").replace("_", "-").replace(".", "-").lower()


def test_a_streamlit_space_loads_through_the_proxy(hub):
    repo = hub.create_repo("streamlit", repo_type="space", sdk="streamlit")
    hub.commit_files(repo, {"README.md": card("streamlit"),
                            "app.py": b"import streamlit as st\nst.write('hello from streamlit')\n"},
                     repo_type="space")
    rt = wait_stage(hub, repo, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert rt["stage"] == "RUNNING", (rt, build_log(hub, repo, "build done", timeout=5))
    r = app_get(hub, repo)
    assert r.status_code == 200 and 'id="root"' in r.text, r.text[:500]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        # The page talks to the app over a WebSocket through the proxy; the script's output
        # comes through it once the script ran (virtual time does not always cover that).
        for _ in range(3):
            dom = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                 "--dump-dom", f"{hub.url}/spaces/{repo}/app/"],
                capture_output=True, text=True, timeout=120).stdout
            if "hello from streamlit" in dom:
                break
        assert 'data-test-connection-state="CONNECTED"' in dom, dom[-2000:]


def test_running_spaces_come_back_after_the_hub_is_killed(tmp_path_factory):
    # A run dir of its own: revision folders are named by repo id, and this hub's ids are
    # the module server's too (at its start each hub removes the folders of ids it lacks).
    own_run_dir = Path(tempfile.mkdtemp(prefix="trove-spaces-run-"))
    own_run_dir.chmod(0o711)
    server = _start(tmp_path_factory, "trove-spaces-restart", spaces_env(own_run_dir))
    try:
        hub = Hub(server)
        static = hub.create_repo("back-static", repo_type="space", sdk="static")
        hub.commit_files(static, {"README.md": card("static"), "index.html": b"static is back"},
                         repo_type="space")
        app = hub.create_repo("back-app", repo_type="space", sdk="gradio")
        hub.commit_files(app, {"README.md": card("gradio"), "app.py": plain_app("app is back")},
                         repo_type="space")
        wait_stage(hub, static, {"RUNNING"}, timeout=60)
        wait_stage(hub, app, {"RUNNING"})
        hub.close()
        # Killed without a chance to stop its apps: the next start stops them.
        left = app_pids(server)
        assert left, "the running app's pid is recorded"
        server.proc.kill()
        server.proc.wait(timeout=30)
        server.stop()
        # A new process on the same data dir.
        server = TroveServer("trove-spaces-restart", server.data_dir.parent, server.extra_env)
        server.start()
        hub = Hub(server)
        wait_stage(hub, static, {"RUNNING"}, timeout=60)
        # The built revision is reused: no install, only a start.
        wait_stage(hub, app, {"RUNNING"}, timeout=START_TIMEOUT_S)
        assert app_get(hub, static).text == "static is back"
        assert app_get(hub, app).text == "app is back"
        deadline = time.monotonic() + 10
        while any(map(alive, left)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(alive, left)), "the old app was stopped"
        hub.close()
    finally:
        server.stop()
        shutil.rmtree(own_run_dir, ignore_errors=True)


# An app (gradio SDK, without gradio) whose /stream answer never ends: a line every 0.2 s.
ENDLESS_APP = textwrap.dedent('''
    import os, time, http.server
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            while True:
                line = b"tick\\n"
                self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.2)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
''')


def push_app(hub: Hub, name: str, source: str) -> str:
    """A new gradio Space whose app.py is `source`."""
    app = hub.create_repo(name, repo_type="space", sdk="gradio")
    hub.commit_files(app, {"README.md": card("gradio"), "app.py": source.encode()}, repo_type="space")
    return app


def app_pids(server: TroveServer) -> list[int]:
    """The pids the hub recorded for the apps it runs."""
    return [int(p.stem) for p in server.data_dir.glob("spaces/*/pids/*.pid")]


def stop_cleanly(server: TroveServer, hub: Hub) -> None:
    """SIGTERM (killed with -9 if no exit within 15 s): the hub must exit 0 with a clean stop."""
    hub.close()
    server.stop()
    assert server.proc.returncode == 0, server.log_tail()
    stopped = server.log_path.read_text()
    assert ": trove stopped" in stopped and "work cut short" not in stopped, server.log_tail()


def assert_gone(pids: list[int], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, pids)), what


def test_a_stopped_hub_ends_its_endless_answers_and_stops_its_apps(tmp_path_factory):
    """SIGTERM with a followed log and a proxied stream open: both end at once (the drain
    does not wait its whole grace period for answers that never end), the hub stops clean,
    and its apps do not outlive it."""
    import threading
    own_run_dir = Path(tempfile.mkdtemp(prefix="trove-spaces-run-"))
    own_run_dir.chmod(0o711)
    # A grace period longer than the harness waits after SIGTERM (it then kills: exit -9).
    env = {**spaces_env(own_run_dir), "TROVE_SHUTDOWN_TIMEOUT": "120"}
    server = _start(tmp_path_factory, "trove-spaces-stop", env)
    try:
        hub = Hub(server)
        app = push_app(hub, "endless", ENDLESS_APP)
        wait_stage(hub, app, {"RUNNING"})
        pids = app_pids(server)
        assert pids and all(map(alive, pids)), pids
        streams = {"log": f"/api/spaces/{app}/logs/run", "app": f"/spaces/{app}/app/stream"}
        opened = {name: threading.Event() for name in streams}
        ended: dict[str, str] = {}

        def follow(name: str, path: str) -> None:
            with httpx.Client(base_url=hub.url, timeout=httpx.Timeout(10, read=90)) as c:
                try:
                    with c.stream("GET", path, headers=hub.auth(server.admin_token)) as r:
                        assert r.status_code == 200, r.status_code
                        opened[name].set()
                        for _ in r.iter_bytes():
                            pass
                    ended[name] = "ended"
                except httpx.HTTPError as e:
                    ended[name] = f"cut: {type(e).__name__}"
                finally:
                    opened[name].set()

        followers = [threading.Thread(target=follow, args=item, daemon=True)
                     for item in streams.items()]
        for t in followers:
            t.start()
        for name, event in opened.items():
            assert event.wait(30), f"{name} stream never opened"
        stop_cleanly(server, hub)
        for t in followers:
            t.join(timeout=30)
        assert set(ended) == set(streams), ended
        assert_gone(pids, "the app outlived the hub")
    finally:
        if server.proc.poll() is None:
            server.stop()
        shutil.rmtree(own_run_dir, ignore_errors=True)


# An app that never answers while the test runs, and starts a process of its own first
# (killing the app's first process alone would leave that one running).
SLOW_START_SLEEP = "612.3456"
SLOW_START_APP = textwrap.dedent(f'''
    import subprocess, time
    subprocess.Popen(["sleep", "{SLOW_START_SLEEP}"])
    time.sleep(600)
''')


def processes_running(argv: list[str]) -> list[int]:
    """The pids of the running processes whose command line is exactly `argv`."""
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes() == wanted and alive(int(proc.name)):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_a_hub_stopped_while_an_app_starts_stops_that_app_too(tmp_path_factory):
    """SIGTERM while an app is spawned but not yet answering: the hub stops clean at once
    (the start gives up) and neither the app nor a process it started outlives it."""
    own_run_dir = Path(tempfile.mkdtemp(prefix="trove-spaces-run-"))
    own_run_dir.chmod(0o711)
    server = _start(tmp_path_factory, "trove-spaces-stop-starting", spaces_env(own_run_dir))
    sleeps: list[int] = []
    try:
        hub = Hub(server)
        app = push_app(hub, "slow-start", SLOW_START_APP)
        wait_stage(hub, app, {"APP_STARTING"})
        deadline = time.monotonic() + 60
        while not sleeps and time.monotonic() < deadline:
            sleeps = processes_running(["sleep", SLOW_START_SLEEP])
            time.sleep(0.1)
        pids = app_pids(server)
        assert sleeps and pids and all(map(alive, pids)), (sleeps, pids)
        assert wait_stage(hub, app, {"APP_STARTING", "RUNNING"}, timeout=5)["stage"] == "APP_STARTING"
        stop_cleanly(server, hub)
        assert_gone(pids + sleeps, "the app being started outlived the hub")
    finally:
        if server.proc.poll() is None:
            server.stop()
        for pid in processes_running(["sleep", SLOW_START_SLEEP]):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(own_run_dir, ignore_errors=True)


def test_an_app_cannot_read_the_hubs_data_dir(hub, server):
    repo = hub.create_repo("isolated", repo_type="space", sdk="gradio")
    headers = hub.auth(server.admin_token)
    r = hub.http.post(f"/api/spaces/{repo}/variables", headers=headers,
                      json={"key": "READ_PATH", "value": str(server.data_dir / "admin-token")})
    assert r.status_code == 200
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("x")}, repo_type="space")
    wait_stage(hub, repo, {"RUNNING"})
    body = app_get(hub, repo).text
    assert body.startswith("denied"), body
    if os.geteuid() == 0:
        # Its own user: uid_base (2000000000 by default) + its repository id.
        uid = int(body.split("uid=")[1].split()[0])
        assert uid > 2_000_000_000, body
    # Nothing of the hub's own environment reaches the app.
    assert "TROVE" not in body and server.admin_token not in body


# A Space's app that looks for another Space's files and secrets, as a hostile tenant would:
# SNOOP_DIRS are the other Spaces' revision folders, SNOOP_FILES files in them; it reports
# what it could list and read, and every environment entry of any process naming VAULT_.
SNOOP_APP = textwrap.dedent('''
    import json, os, http.server
    def attempt(what, path):
        try:
            return what(path)
        except OSError as e:
            return "denied " + type(e).__name__
    def report():
        out = {"uid": os.getuid(), "listed": {}, "read": {}, "environ": []}
        for d in os.environ["SNOOP_DIRS"].split(":"):
            out["listed"][d] = attempt(lambda p: sorted(os.listdir(p)), d)
        for f in os.environ["SNOOP_FILES"].split(":"):
            out["read"][f] = attempt(lambda p: open(p, errors="replace").read(), f)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = open("/proc/%s/environ" % pid, "rb").read().split(b"\\0")
            except OSError:
                continue
            out["environ"] += [e.decode(errors="replace") for e in env if e.startswith(b"VAULT_")]
        return json.dumps(out).encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = report()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            # Cookies of the hub's own it tries to plant in its visitor's browser.
            for cookie in ("trove_session=planted; Path=/", "=trove_form=planted; Path=/",
                           "TROVE_SPACE_ACCESS=x", "snoop=1; Path=/"):
                self.send_header("set-cookie", cookie)
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
''')


def revision_app_dir(run_dir: Path, revision: str) -> Path:
    """`<run dir>/<repo id>/<revision>/app`, found by the revision (unique per Space here)."""
    found = list(run_dir.glob(f"*/{revision}/app"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="apps run as users of their own only under root")
def test_an_app_cannot_read_another_spaces_files_or_secrets(hub, server, run_dir):
    """A public Space's app cannot list or read a private Space's revision folder (an app's
    or a static one's), nor find a running app's secret in any /proc/<pid>/environ: each
    Space runs as its own user and its folder is closed to the others. Nor can it set the
    hub's cookies in its visitor's browser."""
    from huggingface_hub import HfApi
    api = HfApi(endpoint=hub.url, token=server.admin_token)
    secret = "vault-secret-" + str(time.time_ns())
    treasure = "treasure-" + str(time.time_ns())
    vault = hub.create_repo("vault", repo_type="space", sdk="gradio", private=True)
    api.add_space_secret(vault, "VAULT_SECRET", secret)
    hub.commit_files(vault, {"README.md": card("gradio"), "app.py": plain_app("vault"),
                             "treasure.txt": treasure.encode()}, repo_type="space")
    page = hub.create_repo("vault-page", repo_type="space", sdk="static", private=True)
    hub.commit_files(page, {"README.md": card("static"), "index.html": treasure.encode()},
                     repo_type="space")
    wait_stage(hub, vault, {"RUNNING"})
    wait_stage(hub, page, {"RUNNING"})
    vault_app = revision_app_dir(run_dir, api.space_info(vault).sha)
    page_app = revision_app_dir(run_dir, api.space_info(page).sha)
    # The hub itself still serves both.
    assert app_get(hub, vault).text == "vault" and app_get(hub, page).text == treasure

    snoop = hub.create_repo("snoop", repo_type="space", sdk="gradio")
    for key, value in (("SNOOP_DIRS", f"{vault_app.parent.parent}:{vault_app}:{page_app}:{run_dir}"),
                       ("SNOOP_FILES", f"{vault_app / 'treasure.txt'}:{page_app / 'index.html'}")):
        api.add_space_variable(snoop, key, value)
    hub.commit_files(snoop, {"README.md": card("gradio"), "app.py": SNOOP_APP.encode()},
                     repo_type="space")
    wait_stage(hub, snoop, {"RUNNING"})
    r = app_get(hub, snoop)
    assert r.status_code == 200, r.text
    # The app may set its own cookies, none of the hub's (a planted session, a sign-out).
    assert r.headers.get_list("set-cookie") == ["snoop=1; Path=/"], r.headers
    seen = r.json()
    vault_pid, _ = app_pid(server, api.space_info(vault).sha)
    vault_uid = int(Path(f"/proc/{vault_pid}/status").read_text().split("\nUid:\t")[1].split()[0])
    for path, listed in seen["listed"].items():
        assert listed == "denied PermissionError", (path, listed)
    for path, content in seen["read"].items():
        assert content == "denied PermissionError", (path, content)
    assert seen["environ"] == [] and secret not in r.text and treasure not in r.text, seen
    assert seen["uid"] != vault_uid and min(seen["uid"], vault_uid) > 2_000_000_000, (seen, vault_uid)
    # The vault's own app still reads its files and has its secret.
    assert any(f"VAULT_SECRET={secret}".encode() == e for e in
               Path(f"/proc/{vault_pid}/environ").read_bytes().split(b"\0"))


# A local package's build backend (PEP 517, `backend-path`), which the installer runs during
# the Space's build: it reports who it runs as and whether the hub's data dir is in reach,
# then fails, so that the installer prints what it wrote into the build log.
POC_PYPROJECT = b"""[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "poc"
version = "0.1"
"""
POC_BACKEND = textwrap.dedent('''
    import os, sys
    DATA_DIR = %r
    def attempt(what):
        try:
            what()
            return "allowed"
        except OSError as e:
            return "denied " + type(e).__name__
    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        # Short lines: the installer wraps long ones.
        for line in ("uid=%%d gid=%%d groups=%%s" %% (os.getuid(), os.getgid(), os.getgroups()),
                     "data=" + attempt(lambda: os.listdir(DATA_DIR)),
                     "token=" + attempt(lambda: open(os.path.join(DATA_DIR, "admin-token")).read())):
            sys.stderr.write("POC " + line + "\\n")
        raise SystemExit("poc: done")
    def get_requires_for_build_wheel(config_settings=None):
        return []
''')


@pytest.mark.skipif(os.geteuid() != 0, reason="builds run as users of their own only under root")
def test_a_build_runs_requirements_code_as_the_spaces_user_away_from_the_data_dir(
        hub, server, run_dir):
    """A requirement built from source runs its build backend during the Space's build: as
    the Space's own user, unable to read the hub's data dir, and the build log shows no host
    path. The first Space names the package by the absolute path of an earlier revision's
    files (as the security trial did), the second by a path relative to its own files."""
    from huggingface_hub import HfApi
    api = HfApi(endpoint=hub.url, token=server.admin_token)
    poc = {"poc/pyproject.toml": POC_PYPROJECT,
           "poc/backend.py": (POC_BACKEND % str(server.data_dir)).encode()}
    repo = hub.create_repo("buildpoc", repo_type="space", sdk="gradio")
    first = hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("built"), **poc},
                             repo_type="space")
    rt = wait_stage(hub, repo, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert rt["stage"] == "RUNNING", (rt, build_log(hub, repo, "build done", timeout=5))
    first_app = revision_app_dir(run_dir, first)
    space_dir = first_app.parent.parent
    uid = space_dir.stat().st_gid
    assert uid > 2_000_000_000, uid
    assert app_get(hub, repo).text == "built"

    hub.commit_files(repo, {"requirements.txt": f"{first_app / 'poc'}\n".encode()},
                     repo_type="space")
    wait_stage(hub, repo, {"BUILD_ERROR"}, timeout=300)
    log = build_log(hub, repo, "BUILD FAILED")
    assert f"POC uid={uid} gid={uid} groups=[]" in log, log
    assert "POC data=denied PermissionError" in log and "POC token=denied PermissionError" in log
    assert str(run_dir) not in log and str(server.data_dir) not in log, log
    assert "setpriv" in log and "<space>/" in log, log
    # The first revision's virtualenv was written by the Space's user, and its package cache
    # is its own.
    venv = first_app.parent / "venv"
    assert (venv.stat().st_uid, venv.stat().st_gid) == (uid, uid)
    assert (venv / "bin/python").exists()
    cache = space_dir / "cache"
    assert (cache.stat().st_uid, cache.stat().st_mode & 0o777) == (uid, 0o700)

    relative = hub.create_repo("buildpoc-relative", repo_type="space", sdk="gradio")
    hub.commit_files(relative, {"README.md": card("gradio"), "app.py": plain_app("never"),
                                "requirements.txt": b"./poc\n", **poc}, repo_type="space")
    rt = wait_stage(hub, relative, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert rt["stage"] == "BUILD_ERROR", rt
    log = build_log(hub, relative, "BUILD FAILED")
    other_uid = revision_app_dir(run_dir, api.space_info(relative).sha).parent.parent.stat().st_gid
    assert other_uid != uid
    assert f"POC uid={other_uid} gid={other_uid} groups=[]" in log, log
    assert "POC data=denied PermissionError" in log
    assert str(run_dir) not in log, log
    server.check_alive()


def test_an_idle_app_sleeps_and_the_next_request_wakes_it(hub):
    from huggingface_hub import HfApi
    repo = hub.create_repo("sleepy", repo_type="space", sdk="gradio")
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("awake")},
                     repo_type="space")
    wait_stage(hub, repo, {"RUNNING"})
    api = HfApi(endpoint=hub.url, token=hub.server.admin_token)
    assert api.set_space_sleep_time(repo, 1).sleep_time == 1
    wait_stage(hub, repo, {"SLEEPING"}, timeout=30)
    first = app_get(hub, repo)
    assert first.status_code == 503 and "waking up" in first.text
    assert first.headers["retry-after"] == "2" and 'http-equiv="refresh"' in first.text
    deadline = time.monotonic() + START_TIMEOUT_S
    r = first
    while r.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
        r = app_get(hub, repo)
    assert r.status_code == 200 and r.text == "awake"
    api.set_space_sleep_time(repo, -1)


def app_pid(server: TroveServer, revision: str) -> tuple[int, Path]:
    """The pid of the app serving `revision`, and its revision directory (read from the
    records the hub keeps to stop apps a killed hub left)."""
    for record in server.data_dir.glob("spaces/*/pids/*.pid"):
        cwd = record.read_text()
        if revision in cwd:
            return int(record.stem), Path(cwd).parent
    pytest.fail(f"no app records revision {revision}")


def test_a_merged_pull_request_rebuilds_and_a_deleted_space_stops(hub, server):
    from huggingface_hub import CommitOperationAdd, HfApi
    api = HfApi(endpoint=hub.url, token=server.admin_token)
    repo = hub.create_repo("merged", repo_type="space", sdk="gradio")
    hub.commit_files(repo, {"README.md": card("gradio"), "app.py": plain_app("before merge")},
                     repo_type="space")
    wait_stage(hub, repo, {"RUNNING"})
    assert app_get(hub, repo).text == "before merge"
    pr = api.create_commit(repo, repo_type="space", commit_message="change the app", create_pr=True,
                           operations=[CommitOperationAdd("app.py", plain_app("after merge"))])
    time.sleep(1)
    assert app_get(hub, repo).text == "before merge"  # a pull request's ref is not main
    api.merge_pull_request(repo, pr.pr_num, repo_type="space")
    deadline = time.monotonic() + START_TIMEOUT_S
    while app_get(hub, repo).text != "after merge" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert app_get(hub, repo).text == "after merge"
    wait_stage(hub, repo, {"RUNNING"}, timeout=30)

    pid, revision_dir = app_pid(server, api.space_info(repo).sha)
    assert alive(pid) and revision_dir.is_dir()
    api.delete_repo(repo, repo_type="space")
    deadline = time.monotonic() + 20
    while (alive(pid) or revision_dir.parent.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), "the deleted Space's app was stopped"
    assert not revision_dir.parent.exists(), "its revisions were removed"
    assert app_get(hub, repo).status_code == 404
    hub.server.check_alive()


def test_duplicate_repo_copies_files_and_variables_but_not_secrets(hub, server):
    from huggingface_hub import HfApi
    api = HfApi(endpoint=hub.url, token=server.admin_token)
    repo = hub.create_repo("dup-source", repo_type="space", sdk="static")
    hub.commit_files(repo, {"README.md": card("static"), "index.html": b"duplicated app"},
                     repo_type="space")
    api.add_space_variable(repo, "SHOWN", "copied")
    api.add_space_secret(repo, "HIDDEN", "not-copied")
    target = f"{repo}-copy"
    url = api.duplicate_repo(repo, target, repo_type="space", private=True, space_hardware="t4-small",
                             space_secrets=[{"key": "GIVEN", "value": "passed"}],
                             space_variables=[{"key": "EXTRA", "value": "x"}])
    assert url.repo_id == target and url.url.endswith(f"/spaces/{target}")
    info = api.space_info(target)
    assert info.private and info.sha == api.space_info(repo).sha
    variables = api.get_space_variables(target)
    assert variables["SHOWN"].value == "copied" and variables["EXTRA"].value == "x"
    secrets = api.get_space_secrets(target)
    assert "GIVEN" in secrets and "HIDDEN" not in secrets
    wait_stage(hub, target, {"RUNNING"}, timeout=60)
    assert app_get(hub, target).text == "duplicated app"
    # Again: 409, which exist_ok accepts.
    again = api.duplicate_repo(repo, target, repo_type="space", exist_ok=True)
    assert again.repo_id == target


def test_a_gradio_space_page_predicts_in_chromium(hub, gradio_space, chromium):
    """The Space's page embeds the running app; typing into the embedded app and clicking
    Submit returns the app's output, all through the hub's proxy."""
    from playwright.sync_api import expect
    page = new_page(chromium, hub.url)
    try:
        page.goto(f"/spaces/{gradio_space}")
        frame_el = page.locator(f'iframe[src="/spaces/{gradio_space}/app/"]')
        expect(frame_el).to_be_visible()
        app = page.frame_locator(f'iframe[src="/spaces/{gradio_space}/app/"]')
        expect(app.get_by_text("Reverser").first).to_be_visible(timeout=60_000)
        boxes = app.locator("textarea")
        expect(boxes.first).to_be_editable(timeout=60_000)
        boxes.first.fill("trove in a browser")
        app.get_by_role("button", name="Submit").click()
        expect(boxes.nth(1)).to_have_value("resworb a ni evort", timeout=60_000)
        shot(page, "space-gradio-embedded-prediction")
    finally:
        page.context.close()


def test_a_space_on_its_own_subdomain(hub, server):
    """`{ns}-{name}.{subdomain_base}` serves the app at `/`; a private Space is 404 there to
    outsiders, and its members get in with a grant from the hub (never the hub's cookie)."""
    public = hub.create_repo("Sub_pub.v1", repo_type="space")
    hub.commit_files(public, {"README.md": card("static"), "index.html": b"public on its origin",
                              "a/b.txt": b"nested file"}, repo_type="space")
    private = hub.create_repo("subpriv", repo_type="space", private=True)
    hub.commit_files(private, {"README.md": card("static"), "index.html": b"private on its origin"},
                     repo_type="space")
    wait_stage(hub, public, {"RUNNING"}, timeout=60)
    wait_stage(hub, private, {"RUNNING"}, timeout=60)
    name = f"subout{int(time.time() * 1000) % 10**9}"
    server.create_user(name)
    outsider = server.create_token(name, role="write")
    admin = server.admin_token
    port = hub.url.rsplit(":", 1)[1]

    def fresh():
        return httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)

    with fresh() as c:
        r = c.get("/", headers=subdomain_host(hub, public))
        assert r.status_code == 200 and r.text == "public on its origin", r.text
        assert subdomain_host(hub, public)["host"].startswith("admin-sub-pub-v1-")
        assert c.get("/a/b.txt", headers=subdomain_host(hub, public)).text == "nested file"
        # Links an app makes under its path prefix work on its origin too.
        assert c.get(f"/spaces/{public}/app/a/b.txt", headers=subdomain_host(hub, public)).text == "nested file"
        assert c.get("/../x", headers=subdomain_host(hub, public)).status_code == 404
        # Not a Space: 404; the hub's own host is the hub.
        assert c.get("/", headers={"host": f"admin-nothing-here.{SUBDOMAIN_BASE}:{port}"}).status_code == 404
        assert c.get("/healthz").status_code == 200
        # The Space's page links to its origin; an anonymous visitor of a public Space is
        # sent there without a grant.
        assert f'href="/spaces/{public}/subdomain"' in c.get(f"/spaces/{public}").text
        r = c.get(f"/spaces/{public}/subdomain")
        assert r.status_code == 302
        assert r.headers["location"] == f"http://{subdomain_host(hub, public)['host']}/"

    # Private: the same 404 to anonymous visitors and outsiders, at every path.
    for path in ("/", "/index.html", "/.trove/grant?grant=1.1.1.x"):
        with fresh() as c:
            for headers in ({}, hub.auth(outsider)):
                r = c.get(path, headers={**subdomain_host(hub, private), **headers})
                assert r.status_code == 404, (path, headers, r.status_code)
                assert "private on its origin" not in r.text
    with fresh() as c:
        assert c.get(f"/spaces/{private}/subdomain", headers=hub.auth(outsider)).status_code == 404
        # A member's token works on the origin (API clients).
        r = c.get("/", headers={**subdomain_host(hub, private), **hub.auth(admin)})
        assert r.status_code == 200 and r.text == "private on its origin"

    # A member in a browser: the hub sends them over with a short-lived grant, which the
    # Space's origin exchanges for a cookie of its own.
    with fresh() as c:
        r = c.get(f"/spaces/{private}/subdomain", headers=hub.auth(admin))
        assert r.status_code == 302, r.text
        location = httpx.URL(r.headers["location"])
        assert location.host == subdomain_host(hub, private)["host"].split(":")[0]
        assert location.path == "/.trove/grant"
        grant_path = f"{location.path}?{location.query.decode()}"
        # The grant is for this Space only.
        assert c.get(grant_path, headers=subdomain_host(hub, public)).status_code == 404
        r = c.get(grant_path, headers=subdomain_host(hub, private))
        assert r.status_code == 303 and r.headers["location"] == "/", (r.status_code, r.text)
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith("trove_space_access=") and "HttpOnly" in set_cookie
        assert "Domain" not in set_cookie  # host-only: no other Space's origin gets it
        cookie = set_cookie.split(";")[0]
    with fresh() as c:
        r = c.get("/", headers={**subdomain_host(hub, private), "cookie": cookie})
        assert r.status_code == 200 and r.text == "private on its origin"
        # The pass opens no other Space, and a forged one opens nothing.
        value = cookie.split("=", 1)[1]
        forged = value[:-1] + ("0" if value[-1] != "0" else "1")
        r = c.get("/", headers={**subdomain_host(hub, private), "cookie": f"trove_space_access={forged}"})
        assert r.status_code == 404
        # The hub's session cookie means nothing on a Space's origin.
        r = c.get("/", headers={**subdomain_host(hub, private), "cookie": "trove_session=whatever"})
        assert r.status_code == 404


def test_a_gradio_space_owns_the_root_of_its_subdomain(hub, gradio_space):
    host = subdomain_host(hub, gradio_space)
    with httpx.Client(base_url=hub.url, timeout=60, follow_redirects=False) as c:
        page = c.get("/", headers=host)
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:300]
        config = c.get("/config", headers=host)
        assert config.status_code == 200 and config.json()["title"] == "Reverser"
        # A prediction through Gradio's HTTP API on the Space's origin.
        r = c.post("/gradio_api/call/reverse", json={"data": ["subdomain"]}, headers=host)
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        text = ""
        with c.stream("GET", f"/gradio_api/call/reverse/{event_id}", headers=host) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                text += line + "\n"
                if line.startswith("data:") and "niamodbus" in line:
                    break
        assert '"niamodbus"' in text, text
