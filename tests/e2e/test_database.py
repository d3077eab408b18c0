"""`--database`: a bad database stops `trove serve` (and the admin verbs) at start with one
clear line that never shows the password; a PostgreSQL database serves a hub whose admin CLI
reaches it with the same option."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import httpx
import pytest

from conftest import TroveServer, clean_env, trove_binary

PASSWORD = "hunter2-secret"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_trove(args: list[str], data_dir, env_extra: dict[str, str] | None = None,
              timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    env = clean_env()
    env.update(env_extra or {})
    started = time.monotonic()
    p = subprocess.run([str(trove_binary()), *args, "--data-dir", str(data_dir)],
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    return p, time.monotonic() - started


def admin_url() -> str | None:
    return os.environ.get("TROVE_E2E_POSTGRES_URL") or os.environ.get("TROVE_TEST_POSTGRES_URL")


def assert_one_clear_line(p: subprocess.CompletedProcess, *expected: str) -> None:
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert PASSWORD not in p.stdout + p.stderr
    assert "panicked" not in p.stderr


def test_an_unreachable_database_stops_serve_at_once(tmp_path):
    port = closed_port()
    url = f"postgres://trove:{PASSWORD}@127.0.0.1:{port}/trove"
    p, took = run_trove(["serve", "--listen", "127.0.0.1:0", "--database", url], tmp_path / "d")
    assert_one_clear_line(p, f"cannot connect to the database at postgres://trove:***@127.0.0.1:{port}/trove")
    assert took < 30, took
    assert not (tmp_path / "d" / "trove.db").exists()
    # The same through the environment, for an admin verb.
    p, _ = run_trove(["user", "list"], tmp_path / "d", {"TROVE_DATABASE": url})
    assert_one_clear_line(p, "cannot connect to the database at postgres://trove:***@")
    # An admin verb creates no data dir of its own (only `serve` does).
    p, _ = run_trove(["user", "list"], tmp_path / "absent", {"TROVE_DATABASE": url})
    assert_one_clear_line(p, "cannot connect to the database at postgres://trove:***@")
    assert not (tmp_path / "absent").exists()


def test_a_malformed_database_url_is_refused(tmp_path):
    for url, reason in [(f"mysql://trove:{PASSWORD}@db/trove", "expected sqlite://"),
                        ("/var/lib/trove.db", "expected sqlite://"),
                        (f"postgres://trove:{PASSWORD}@db:notaport/trove", "invalid database URL")]:
        p, _ = run_trove(["serve", "--listen", "127.0.0.1:0", "--database", url], tmp_path / "d")
        assert_one_clear_line(p, reason)


def test_refused_credentials_stop_serve_with_the_servers_reason(tmp_path):
    base = admin_url()
    if not base:
        pytest.skip("no PostgreSQL server (scripts/test.sh starts one)")
    user_part, rest = base.split("@", 1)
    user = user_part.rsplit(":", 1)[0] if user_part.count(":") > 1 else user_part
    url = f"{user}:{PASSWORD}@{rest}"
    p, took = run_trove(["serve", "--listen", "127.0.0.1:0", "--database", url], tmp_path / "d")
    assert_one_clear_line(p, "password authentication failed", ":***@")
    assert took < 30, took


def test_a_hub_on_postgresql_is_served_and_administered(tmp_path):
    base = admin_url()
    if not base:
        pytest.skip("no PostgreSQL server (scripts/test.sh starts one)")
    name = "e2e_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", base, "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=60)
    head, _, query = base.partition("?")
    url = head.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    server = TroveServer("trove-pg", tmp_path / "srv", {"TROVE_DATABASE": url})
    server.start()
    try:
        assert not (server.data_dir / "trove.db").exists()
        log = server.log_path.read_text()
        assert 'db.backend="postgres"' in log, log[-2000:]
        assert url.split("@")[0].rsplit(":", 1)[1] not in log
        server.create_user("pgalice")
        token = server.create_token("pgalice")
        r = httpx.get(f"{server.url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"},
                      timeout=10)
        assert r.status_code == 200 and r.json()["name"] == "pgalice", r.text
        # The CLI without the database option would open (and refuse) the data dir's SQLite.
        p, _ = run_trove(["user", "list"], server.data_dir)
        assert p.returncode != 0 and "no Trove database" in p.stderr, p.stderr
        # With the database but in the wrong directory: the hub's store is not there, and a
        # maintenance verb says so rather than examine an empty store it made itself.
        elsewhere = tmp_path / "elsewhere"
        p, _ = run_trove(["fsck"], elsewhere, {"TROVE_DATABASE": url})
        assert p.returncode != 0 and "no Trove object store at" in p.stderr, p.stderr
        assert str(elsewhere / "lfs") in p.stderr, p.stderr
        assert not elsewhere.exists()
        # An admin verb on the database alone works from anywhere, creating nothing.
        p, _ = run_trove(["user", "list"], elsewhere, {"TROVE_DATABASE": url})
        assert p.returncode == 0 and "pgalice" in p.stdout, p.stderr
        assert not elsewhere.exists()
    finally:
        server.stop()
