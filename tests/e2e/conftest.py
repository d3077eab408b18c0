"""Fixtures for the end-to-end tests: the real `trove` binary and the real `huggingface_hub` client.

The client reads HF_ENDPOINT, HF_HUB_DISABLE_XET, HF_HUB_OFFLINE ... at import time, so every
client call runs in a subprocess (`Client.py`, `Client.cli`) with exactly the environment the
test wants and a fresh HF_HOME per test. Raw HTTP checks use httpx2 (the HTTP library that
ships with huggingface_hub 2.4.0) from the test process itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:  # huggingface_hub 2.4.0 ships httpx2; plain httpx works the same way
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent.parent
HF_CLI = Path(sys.executable).parent / "hf"

STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
ADMIN_CLI_TIMEOUT_S = 60
CLIENT_TIMEOUT_S = 240

# The bound socket (a public URL given with `TROVE_PUBLIC_URL`, a balancer's, is printed
# apart, on a `Public URL:` line).
LISTEN_RE = re.compile(r"listening on (http://\S+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RESULT_MARK = "@@E2E-RESULT@@"
ADMIN = object()  # sentinel: "use the admin token"


# --------------------------------------------------------------------------------------------
# Small pure helpers (also imported by the tests)
# --------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{sha256_bytes(data)}\nsize {len(data)}\n"
    ).encode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_random(path: Path, size: int, seed: int | None = None) -> bytes:
    """Write `size` pseudo-random bytes (fast: one urandom block repeated with a counter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(8, "little") + block[: min(len(block), size - len(out) - 8)]
        i += 1
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


def write_tree(base: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def api_prefix(repo_type: str) -> str:
    return {"model": "models", "dataset": "datasets", "space": "spaces"}[repo_type]


def url_prefix(repo_type: str) -> str:
    return {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


def trove_binary() -> Path:
    configured = os.environ.get("TROVE_BIN")
    path = Path(configured) if configured else ROOT / "target" / "release" / "trove"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"trove server binary not found at {path}: build it with `cargo build --release` "
            "or set TROVE_BIN",
            pytrace=False,
        )
    return path.resolve()


def postgres_database_for(base_dir: Path) -> str | None:
    """In PostgreSQL mode (TROVE_E2E_POSTGRES_URL, set by scripts/test.sh), the URL of the
    database of the server kept in `base_dir`: created empty the first time, the same one
    when a test restarts a server on the same data dir. `None` in the default (SQLite) mode."""
    admin_url = os.environ.get("TROVE_E2E_POSTGRES_URL")
    if not admin_url:
        return None
    marker = base_dir / "database-url"
    if marker.is_file():
        return marker.read_text().strip()
    name = "e2e_" + uuid.uuid4().hex[:16]
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_url,
                        "-c", f"CREATE DATABASE {name}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail(f"creating PostgreSQL database {name} failed: {p.stderr}", pytrace=False)
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    base_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(url)
    return url


class Relay:
    """A TCP relay on 127.0.0.1 to a server the hub depends on (the S3 server, PostgreSQL) that
    a test can freeze or cut. Frozen, it accepts connections and reads requests but forwards
    nothing either way, as a server behind a hung load balancer would; closed, its connections
    are reset and new ones refused, as a stopped server's are. With no upstream it only ever
    holds."""

    def __init__(self, upstream: tuple[str, int] | None):
        self.upstream = upstream
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            self.sockets.append(client)
            if self.upstream is None:
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self.sockets.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self.closing.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            # Bounded: the relay closes within the test's own bounds.
            while not self.flowing.wait(0.2):
                if self.closing.is_set():
                    return
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.closing.set()
        self.flowing.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


class TroveServer:
    """One `trove serve` process on 127.0.0.1:<free port> with its own data dir (and, in
    PostgreSQL mode, its own database)."""

    def __init__(self, name: str, base_dir: Path, extra_env: dict[str, str] | None = None):
        self.name = name
        self.binary = trove_binary()
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "server.log"
        self.extra_env = dict(extra_env or {})
        self.database_url = self.extra_env.get("TROVE_DATABASE") or postgres_database_for(base_dir)
        if self.database_url:
            self.extra_env["TROVE_DATABASE"] = self.database_url
        self.url = ""  # where the tests connect: the bound address
        self.admin_token = ""
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = clean_env()
        env.update(s3_storage_env(self.data_dir))
        env.update(self.extra_env)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self._log = open(self.log_path, "a", buffering=1, encoding="utf-8", errors="replace")
        shown = {k: ("(set)" if k == "TROVE_DATABASE" else v) for k, v in self.extra_env.items()}
        self._log.write(f"### {self.name}: extra env {shown}\n")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=env,
        )
        self._reader = threading.Thread(target=self._pump, name=f"{self.name}-stdout", daemon=True)
        self._reader.start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.url:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                pytest.fail(f"{self.name}: no 'listening on' line within {STARTUP_TIMEOUT_S}s\n"
                            f"{self.log_tail()}", pytrace=False)
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process exited
                code = self.proc.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail(f"{self.name}: server exited with code {code} before listening\n"
                            f"{self.log_tail()}", pytrace=False)
            line = ANSI_RE.sub("", line)
            m = LISTEN_RE.search(line)
            if m:
                self.url = m.group(1).rstrip("/.,;")

        token_file = self.data_dir / "admin-token"
        if not token_file.is_file():
            self.stop()
            pytest.fail(f"{self.name}: {token_file} missing after the listening line", pytrace=False)
        mode = token_file.stat().st_mode & 0o777
        assert mode == 0o600, f"admin-token mode is {oct(mode)}, expected 0o600"
        self.admin_token = token_file.read_text().strip()
        assert self.admin_token and "\n" not in self.admin_token

        r = httpx.get(f"{self.url}/healthz", timeout=10)
        assert r.status_code == 200, f"/healthz answered {r.status_code}: {r.text[:300]}"

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            if not self.url:
                self._lines.put(line)
        self._lines.put(None)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; a second call does nothing."""
        if self.proc is None or self._log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._log.write(f"### {self.name}: no exit {STOP_TIMEOUT_S}s after SIGTERM; killing\n")
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._log.write(f"### {self.name}: exited with {self.proc.returncode}\n")
        self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} log ({self.log_path}), last {lines} lines ---\n{tail}"

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} died (exit {self.proc.returncode})\n{self.log_tail()}",
                        pytrace=False)

    # -- admin CLI on the same data dir --------------------------------------------------------

    def cli_env(self) -> dict[str, str]:
        """The environment for the admin CLI on this server's hub: its database and bucket too."""
        env = {**clean_env(), **s3_storage_env(self.data_dir)}
        if "TROVE_STORAGE" in self.extra_env:
            env["TROVE_STORAGE"] = self.extra_env["TROVE_STORAGE"]
        if self.database_url:
            env["TROVE_DATABASE"] = self.database_url
        return env

    def admin_cli(self, *args: str) -> str:
        cmd = [str(self.binary), *args, "--data-dir", str(self.data_dir)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=ADMIN_CLI_TIMEOUT_S,
                           stdin=subprocess.DEVNULL, env=self.cli_env())
        if p.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed ({p.returncode})\nstdout: {p.stdout}\n"
                        f"stderr: {p.stderr}", pytrace=False)
        return p.stdout

    def create_user(self, name: str, *, admin: bool = False, email: str | None = None) -> None:
        args = ["user", "create", name]
        if admin:
            args.append("--admin")
        if email:
            args += ["--email", email]
        self.admin_cli(*args)

    def create_token(self, user: str, *, role: str = "write", name: str | None = None) -> str:
        args = ["token", "create", "--user", user, "--role", role]
        if name:
            args += ["--name", name]
        token = self.admin_cli(*args).strip()
        assert token and len(token.split()) == 1, f"token create printed {token!r}"
        return token


def wait_in_log(server: "TroveServer", pattern: re.Pattern[str] | str, proc: subprocess.Popen,
                timeout: float, *, offset: int = 0) -> re.Match[str] | str:
    """The first match of `pattern` (a regex, or text to find) in the server's log from byte
    `offset` on, as soon as the line is written (polled every few ms: a moment the test acts
    on must not pass); fails if the client `proc` exits or the time runs out first."""
    find = pattern.search if isinstance(pattern, re.Pattern) else (lambda t: pattern if pattern in t else None)
    deadline = time.monotonic() + timeout
    with open(server.log_path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        text = ""
        while True:
            text += log.read()
            found = find(text)
            if found:
                return found
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the client ended (exit {proc.returncode}) before {pattern!r} was logged\n"
                            f"{out}\n{err[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} in {server.name}'s log within {timeout}s\n{server.log_tail()}")
            time.sleep(0.005)


def clean_env() -> dict[str, str]:
    """The inherited environment minus anything that would steer the client or leak a token."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("HF_", "HUGGINGFACE_", "TROVE_"))}


def s3_storage_env(data_dir: Path) -> dict[str, str]:
    """S3 mode (`TROVE_E2E_S3_URL=s3://bucket?endpoint=…&region=…`, with AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, as scripts/test.sh sets for its S3 pass): the server on `data_dir`
    keeps its objects in that bucket under a key prefix of its own, named by the data dir so a
    restart on the same data dir finds them. Empty otherwise (the embedded mode)."""
    url = os.environ.get("TROVE_E2E_S3_URL", "")
    if not url:
        return {}
    base, _, query = url.partition("?")
    prefix = "e2e-" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return {"TROVE_STORAGE": f"{base.rstrip('/')}/{prefix}" + (f"?{query}" if query else "")}


def store_dir(server: "TroveServer") -> Path:
    """Where `server`'s store keeps xorbs (`xorbs/`) and whole objects (`objects/`): lfs/ in
    its data dir in the embedded mode; in S3 mode its key prefix's folder in the bucket's
    folder under the S3 server's root (`TROVE_E2E_S3_ROOT`: s3s-fs keeps each object as a
    file named by its key), so tests measure the same bytes either way."""
    storage = server.extra_env.get("TROVE_STORAGE") or s3_storage_env(server.data_dir).get("TROVE_STORAGE")
    if not storage:
        return server.data_dir / "lfs"
    root = os.environ.get("TROVE_E2E_S3_ROOT")
    assert root, "S3 mode needs TROVE_E2E_S3_ROOT (the S3 server's data root) to look at stored bytes"
    location = storage.removeprefix("s3://").partition("?")[0]
    return Path(root) / location


@dataclass
class User:
    name: str
    token: str


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str] | None = None):
    server = TroveServer(name, tmp_path_factory.mktemp(name), env)
    server.start()
    return server


@pytest.fixture(scope="session")
def trove(tmp_path_factory):
    """The main server, shared by most tests. Its webhooks may deliver to loopback (the
    operator's opt-in): the tests' receivers listen on 127.0.0.1."""
    server = _start(tmp_path_factory, "trove-main", {"TROVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trove_multipart(tmp_path_factory):
    """A server that asks the client for multipart LFS uploads above 5 MB, in 2 MB parts."""
    server = _start(tmp_path_factory, "trove-multipart", {
        "TROVE_LFS_MULTIPART_THRESHOLD": "5000000",
        "TROVE_LFS_PART_SIZE": "2000000",
    })
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trove_small_cap(tmp_path_factory):
    """A server whose commit bodies are capped at 1 MB."""
    server = _start(tmp_path_factory, "trove-small-cap", {"TROVE_MAX_COMMIT_BYTES": "1000000"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bob(trove) -> User:
    """A second, non-admin user with a write token."""
    name = unique("bob")
    trove.create_user(name, email=f"{name}@example.invalid")
    return User(name, trove.create_token(name, role="write", name="e2e-write"))


@pytest.fixture(scope="session")
def admin_read_token(trove) -> str:
    return trove.create_token("admin", role="read", name=unique("read"))


# --------------------------------------------------------------------------------------------
# The client side
# --------------------------------------------------------------------------------------------

PRELUDE = textwrap.dedent(f'''
    import hashlib, json, os, sys
    from pathlib import Path
    ARGS = json.loads(os.environ.get("E2E_ARGS", "{{}}"))
    import huggingface_hub
    from huggingface_hub import HfApi
    api = HfApi()

    def sha256_file(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def describe(exc):
        resp = getattr(exc, "response", None)
        return {{
            "ok": False,
            "type": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "msg": str(exc)[:4000],
            "status": getattr(resp, "status_code", None),
            "error_code": resp.headers.get("x-error-code") if resp is not None else None,
        }}

    def attempt(fn, *args, **kwargs):
        """Run fn; return {{"ok": True, "value": ...}} or a description of the exception."""
        try:
            return {{"ok": True, "value": fn(*args, **kwargs)}}
        except Exception as exc:  # noqa: BLE001 - the test decides what is acceptable
            return describe(exc)

    def emit(obj):
        print({RESULT_MARK!r} + json.dumps(obj, default=str), flush=True)
''')


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    result: dict | list | None = None

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


@dataclass
class Client:
    """Runs real-client code in subprocesses against one server, with one HF_HOME."""

    server: TroveServer
    home: Path
    work: Path
    _n: int = field(default=0)

    def env(self, *, token=ADMIN, xet: bool = False, offline: bool = False,
            extra: dict[str, str] | None = None, args: dict | None = None) -> dict[str, str]:
        env = clean_env()
        env.update({
            "HF_ENDPOINT": self.server.url,
            "HF_HOME": str(self.home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "E2E_ARGS": json.dumps(args or {}),
        })
        if token is ADMIN:
            token = self.server.admin_token
        if token:
            env["HF_TOKEN"] = token
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        env.update(extra or {})
        return env

    def _run(self, cmd: list[str], env: dict[str, str], timeout: float, check: bool, what: str) -> Run:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                               stdin=subprocess.DEVNULL, cwd=self.work)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{what} timed out after {timeout}s\nstdout: {e.stdout}\nstderr: {e.stderr}\n"
                        f"{self.server.log_tail()}", pytrace=False)
        run = Run(p.returncode, p.stdout, p.stderr)
        for line in p.stdout.splitlines():
            if line.startswith(RESULT_MARK):
                run.result = json.loads(line[len(RESULT_MARK):])
        if check and p.returncode != 0:
            self.server.check_alive()
            pytest.fail(f"{what} failed with exit {p.returncode}\n--- stdout ---\n{p.stdout[-6000:]}\n"
                        f"--- stderr ---\n{p.stderr[-6000:]}\n{self.server.log_tail()}", pytrace=False)
        return run

    def py(self, code: str, *, token=ADMIN, xet: bool = False, offline: bool = False,
           args: dict | None = None, extra_env: dict[str, str] | None = None,
           check: bool = True, timeout: float = CLIENT_TIMEOUT_S) -> Run:
        """Run Python client code; `emit(obj)` in it sets `Run.result`. ARGS holds `args`."""
        self._n += 1
        script = self.work / f"client_{self._n}.py"
        script.write_text(PRELUDE + "\n" + textwrap.dedent(code))
        env = self.env(token=token, xet=xet, offline=offline, extra=extra_env, args=args)
        return self._run([sys.executable, str(script)], env, timeout, check, f"client script {script}")

    def popen_py(self, code: str, *, token=ADMIN, xet: bool = False, args: dict | None = None,
                 extra_env: dict[str, str] | None = None):
        """Start client code without waiting (for concurrency tests); finish with `wait_py`."""
        self._n += 1
        script = self.work / f"client_{self._n}.py"
        script.write_text(PRELUDE + "\n" + textwrap.dedent(code))
        env = self.env(token=token, xet=xet, args=args, extra=extra_env)
        return subprocess.Popen([sys.executable, str(script)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, cwd=self.work)

    def wait_py(self, proc: subprocess.Popen, timeout: float = CLIENT_TIMEOUT_S) -> Run:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"client process timed out\n{out}\n{err}", pytrace=False)
        run = Run(proc.returncode, out, err)
        for line in out.splitlines():
            if line.startswith(RESULT_MARK):
                run.result = json.loads(line[len(RESULT_MARK):])
        return run

    def cli(self, *args: str, token=ADMIN, xet: bool = False, check: bool = True,
            timeout: float = CLIENT_TIMEOUT_S) -> Run:
        """Run the real `hf` CLI."""
        env = self.env(token=token, xet=xet)
        return self._run([str(HF_CLI), *args], env, timeout, check, f"hf {' '.join(args)}")


class Hub:
    """Raw-HTTP helpers for one server (test set-up and wire-level assertions)."""

    def __init__(self, server: TroveServer):
        self.server = server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def auth(token: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"} if token else {}

    def token(self, token=ADMIN) -> str | None:
        return self.server.admin_token if token is ADMIN else token

    def create_repo(self, prefix: str, *, repo_type: str = "model", private: bool = False,
                    namespace: str = "admin", token=ADMIN, sdk: str | None = None) -> str:
        name = unique(prefix)
        body: dict = {"name": name, "organization": namespace, "type": repo_type,
                      "visibility": "private" if private else "public"}
        if repo_type == "space":
            body["sdk"] = sdk or "static"
        r = self.http.post("/api/repos/create", json=body, headers=self.auth(self.token(token)))
        assert r.status_code == 200, f"create {namespace}/{name}: {r.status_code} {r.text[:500]}"
        return f"{namespace}/{name}"

    def info(self, repo: str, *, repo_type: str = "model", revision: str | None = None,
             token=ADMIN) -> httpx.Response:
        path = f"/api/{api_prefix(repo_type)}/{repo}"
        if revision is not None:
            path += "/revision/" + quote_all(revision)
        return self.http.get(path, headers=self.auth(self.token(token)))

    def head_sha(self, repo: str, *, repo_type: str = "model", revision: str = "main", token=ADMIN) -> str:
        r = self.info(repo, repo_type=repo_type, revision=revision, token=token)
        assert r.status_code == 200, f"info {repo}@{revision}: {r.status_code} {r.text[:300]}"
        sha = r.json()["sha"]
        assert re.fullmatch(r"[0-9a-f]{40}", sha), sha
        return sha

    def commit_raw(self, repo: str, body: bytes | str, *, repo_type: str = "model",
                   revision: str = "main", token=ADMIN) -> httpx.Response:
        if isinstance(body, str):
            body = body.encode()
        return self.http.post(
            f"/api/{api_prefix(repo_type)}/{repo}/commit/{quote_all(revision)}",
            content=body,
            headers={**self.auth(self.token(token)), "content-type": "application/x-ndjson"},
        )

    def commit_files(self, repo: str, files: dict[str, bytes], *, summary: str = "e2e setup",
                     repo_type: str = "model", revision: str = "main",
                     deletes: list[str] = (), token=ADMIN) -> str:
        """Commit regular (inline) files through the NDJSON endpoint; returns the commit id."""
        lines = [ndjson("header", summary=summary, description="")]
        lines += [ndjson("file", path=p, content=b64(d), encoding="base64") for p, d in files.items()]
        lines += [ndjson("deletedFile", path=p) for p in deletes]
        r = self.commit_raw(repo, "\n".join(lines) + "\n", repo_type=repo_type, revision=revision,
                            token=token)
        assert r.status_code == 200, f"commit to {repo}@{revision}: {r.status_code} {r.text[:500]}"
        oid = r.json()["commitOid"]
        assert re.fullmatch(r"[0-9a-f]{40}", oid), oid
        return oid


def quote_all(s: str) -> str:
    from urllib.parse import quote
    return quote(s, safe="")


def b64(data: bytes) -> str:
    import base64
    return base64.b64encode(data).decode()


def ndjson(key: str, **value) -> str:
    return json.dumps({"key": key, "value": value})


@pytest.fixture
def client(trove, tmp_path) -> Client:
    """A real client (fresh HF_HOME) talking to the main server."""
    return make_client(trove, tmp_path)


def make_client(server: TroveServer, tmp_path: Path) -> Client:
    home = tmp_path / "hf_home"
    work = tmp_path / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return Client(server, home, work)


@pytest.fixture
def hub(trove):
    h = Hub(trove)
    yield h
    h.close()
    trove.check_alive()


@pytest.fixture
def make_hub():
    """Hub helpers for another server fixture: `make_hub(server)`."""
    created: list[Hub] = []

    def factory(server: TroveServer) -> Hub:
        h = Hub(server)
        created.append(h)
        return h

    yield factory
    for h in created:
        h.close()


def pytest_report_header(config):
    try:
        import huggingface_hub
        version = huggingface_hub.__version__
    except ImportError:  # pragma: no cover
        version = "not installed"
    bin_ = os.environ.get("TROVE_BIN") or str(ROOT / "target" / "release" / "trove")
    return [f"trove binary: {bin_}", f"huggingface_hub: {version}", f"hf CLI: {HF_CLI}"]

