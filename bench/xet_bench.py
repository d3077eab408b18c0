#!/usr/bin/env python3
"""Xet transfer benchmark: a large file up and down through Xet and through the LFS path of
Trove, against xet-core's local simulation CAS server, and the real client's plain-HTTP
download from nginx serving the same file. Interleaved round by round; medians reported.

Run through bench/xet.sh, which installs and builds what this needs. A benchmark, not a test:
it prints figures and ratios against the aims, and fails only when something does not run.

Every server it starts binds 127.0.0.1, is stopped by PID, and the work dir is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

MIB = 1 << 20
COMMIT = "0" * 39 + "1"  # what nginx claims as X-Repo-Commit for its static "repo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Proc:
    """A server we started; stopped by PID only."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict | None = None, cwd=None):
        self.name = name
        self.log = open(log, "w")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL, cwd=cwd)

    def rss_kib(self, key: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc/PID/stat)."""
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self.log.close()


class PeakRss:
    """Samples a process's RSS every 50 ms while active (bounded by the process's life)."""

    def __init__(self, proc: Proc):
        self.proc, self.peak, self._stop = proc, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.rss_kib())
            except (OSError, ValueError):
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


CLIENT_PRELUDE = textwrap.dedent("""
    import json, os, sys, time
    ARGS = json.loads(sys.argv[1])
    def done(seconds, **extra):
        print("@@RESULT@@" + json.dumps({"seconds": seconds, **extra}), flush=True)
""")

HUB_UPLOAD = CLIENT_PRELUDE + textwrap.dedent("""
    from huggingface_hub import HfApi
    api = HfApi()
    t = time.perf_counter()
    api.upload_file(path_or_fileobj=ARGS["file"], path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
    done(time.perf_counter() - t)
""")

HUB_DOWNLOAD = CLIENT_PRELUDE + textwrap.dedent("""
    from huggingface_hub import hf_hub_download
    t = time.perf_counter()
    p = hf_hub_download(ARGS["repo"], ARGS["path"], local_dir=ARGS["dest"])
    seconds = time.perf_counter() - t
    done(seconds, size=os.path.getsize(p))
""")

XET_UPLOAD = CLIENT_PRELUDE + textwrap.dedent("""
    import hf_xet
    s = hf_xet.XetSession()
    t = time.perf_counter()
    with s.new_upload_commit(endpoint=ARGS["endpoint"], token=ARGS["token"],
                             token_expiry_unix_secs=int(time.time()) + 3600) as c:
        h = c.start_upload_file(ARGS["file"])
    seconds = time.perf_counter() - t
    info = hf_xet.hash_files([ARGS["file"]])[0]
    done(seconds, hash=info.hash)
""")

XET_DOWNLOAD = CLIENT_PRELUDE + textwrap.dedent("""
    import hf_xet
    s = hf_xet.XetSession()
    t = time.perf_counter()
    with s.new_file_download_group(endpoint=ARGS["endpoint"], token=ARGS["token"],
                                   token_expiry_unix_secs=int(time.time()) + 3600) as g:
        g.start_download_file(hf_xet.XetFileInfo(ARGS["hash"], ARGS["size"]), ARGS["dest"])
    done(time.perf_counter() - t, size=os.path.getsize(ARGS["dest"]))
""")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="trove-xet-bench.", dir=args.bench_dir))
        self.work.chmod(0o755)  # nginx's workers (user nobody) read the served file from here
        self.procs: list[Proc] = []
        self.python = args.python

    # -- servers ---------------------------------------------------------------------------

    def start_trove(self) -> None:
        data = self.work / "trove-data"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}
        env["NO_COLOR"] = "1"
        self.trove = Proc("trove", [self.args.trove, "serve", "--data-dir", str(data),
                                    "--listen", f"127.0.0.1:{port}"], self.work / "trove.log", env)
        self.procs.append(self.trove)
        self.trove_url = f"http://127.0.0.1:{port}"
        wait_http(self.trove_url + "/healthz")
        self.token = (data / "admin-token").read_text().strip()
        self.trove_data = data

    def start_simulation(self) -> None:
        port = free_port()
        self.sim = Proc("local_cas_server", [self.args.sim, "--data-directory", str(self.work / "sim-data"),
                                              "--host", "127.0.0.1", "--port", str(port)],
                        self.work / "sim.log")
        self.procs.append(self.sim)
        self.sim_url = f"http://127.0.0.1:{port}"
        wait_http(self.sim_url + "/health")

    def start_nginx(self) -> None:
        root = self.work / "www"
        root.mkdir()
        port = free_port()
        conf = self.work / "nginx.conf"
        conf.write_text(textwrap.dedent(f"""
            worker_processes 2;
            pid {self.work}/nginx.pid;
            error_log {self.work}/nginx-error.log;
            daemon off;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                sendfile on;
                tcp_nopush on;
                client_body_temp_path {self.work}/ngx-body;
                proxy_temp_path {self.work}/ngx-proxy;
                fastcgi_temp_path {self.work}/ngx-fcgi;
                uwsgi_temp_path {self.work}/ngx-uwsgi;
                scgi_temp_path {self.work}/ngx-scgi;
                server {{
                    listen 127.0.0.1:{port};
                    root {root};
                    location / {{
                        default_type application/octet-stream;
                        add_header X-Repo-Commit {COMMIT} always;
                    }}
                }}
            }}
        """))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = Proc("nginx", [nginx, "-c", str(conf), "-p", str(self.work)], self.work / "nginx.log")
        self.procs.append(self.nginx)
        self.nginx_url = f"http://127.0.0.1:{port}"
        self.nginx_root = root
        wait_port(port)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop(signal.SIGQUIT if p.name == "nginx" else signal.SIGTERM)

    # -- helpers ---------------------------------------------------------------------------

    def client(self, code: str, args: dict, env_extra: dict) -> dict:
        home = Path(tempfile.mkdtemp(prefix="hf-home.", dir=self.work))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}
        env.update({"HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"})
        env.update(env_extra)
        p = subprocess.run([self.python, "-c", code, json.dumps(args)], capture_output=True,
                           text=True, env=env, timeout=1800, stdin=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)
        for line in p.stdout.splitlines():
            if line.startswith("@@RESULT@@"):
                return json.loads(line[len("@@RESULT@@"):])
        raise RuntimeError(f"client failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")

    def hub_env(self, url: str, xet: bool) -> dict:
        env = {"HF_ENDPOINT": url, "HF_TOKEN": self.token}
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        return env

    def create_repo(self, name: str) -> str:
        req = urllib.request.Request(
            self.trove_url + "/api/repos/create", method="POST",
            data=json.dumps({"name": name, "organization": "admin", "type": "model"}).encode(),
            headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30):
            pass
        return f"admin/{name}"

    def cas_token(self, repo: str, kind: str) -> str:
        req = urllib.request.Request(f"{self.trove_url}/api/models/{repo}/xet-{kind}-token/main",
                                     headers={"authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["accessToken"]

    def make_file(self, path: Path, size: int) -> None:
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 64 * MIB)
                f.write(os.urandom(n))
                left -= n

    def drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict:
        size = int(self.args.gib * (1 << 30))
        self.start_trove()
        self.start_simulation()
        self.start_nginx()
        idle_rss = self.trove.rss_kib()
        results: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        peak = 0
        cpu_mark = [self.trove.cpu_seconds()]

        def record(key: str, seconds: float) -> None:
            """One measurement, with Trove's CPU seconds per GiB since the previous one."""
            now = self.trove.cpu_seconds()
            per_gib = (now - cpu_mark[0]) / (size / (1 << 30))
            cpu_mark[0] = now
            results.setdefault(key, []).append(size / MIB / seconds)
            cpu.setdefault(key, []).append(per_gib)
            print(f"  {key:34s} {size / MIB / seconds:9.1f} MiB/s   Trove CPU {per_gib:5.2f} s/GiB", flush=True)

        for rnd in range(self.args.rounds):
            print(f"round {rnd + 1}/{self.args.rounds}", flush=True)
            # Fresh bytes for every file of every round: nothing may dedup, and a file uploaded
            # through one path must not let the other skip its upload.
            src = self.work / "src.bin"
            self.make_file(src, size)
            src_lfs = self.work / "src-lfs.bin"
            self.make_file(src_lfs, size)
            repo = self.create_repo(f"xet-bench-{rnd}")
            cpu_mark[0] = self.trove.cpu_seconds()
            with PeakRss(self.trove) as watch:
                # Uploads through the hub: Xet (default install) and LFS (HF_HUB_DISABLE_XET=1).
                r = self.client(HUB_UPLOAD, {"file": str(src), "path": "xet.bin", "repo": repo},
                                self.hub_env(self.trove_url, xet=True))
                record("upload   hub, Xet", r["seconds"])
                r = self.client(HUB_UPLOAD, {"file": str(src_lfs), "path": "lfs.bin", "repo": repo},
                                self.hub_env(self.trove_url, xet=False))
                record("upload   hub, LFS", r["seconds"])
                # The CAS alone, same client library, Trove then the simulation server. A
                # second file (fresh bytes) so Trove's copy from the hub upload does not dedup.
                src2 = self.work / "src2.bin"
                self.make_file(src2, size)
                w = self.cas_token(repo, "write")
                cpu_mark[0] = self.trove.cpu_seconds()
                r = self.client(XET_UPLOAD, {"file": str(src2), "endpoint": f"{self.trove_url}/xet", "token": w}, {})
                record("upload   hf_xet -> Trove CAS", r["seconds"])
                r = self.client(XET_UPLOAD, {"file": str(src2), "endpoint": self.sim_url, "token": "x"}, {})
                record("upload   hf_xet -> simulation CAS", r["seconds"])
                sim_hash = r["hash"]
                self.drop(src2)

                # Downloads: hf_xet through Trove, plain HTTP from Trove (LFS blob and the
                # Xet bridge), plain HTTP from nginx, hf_xet from the simulation server.
                dest = self.work / "dest"
                r = self.client(HUB_DOWNLOAD, {"repo": repo, "path": "xet.bin", "dest": str(dest)},
                                self.hub_env(self.trove_url, xet=True))
                record("download hub, Xet (hf_xet)", r["seconds"])
                shutil.rmtree(dest, ignore_errors=True)
                r = self.client(HUB_DOWNLOAD, {"repo": repo, "path": "lfs.bin", "dest": str(dest)},
                                self.hub_env(self.trove_url, xet=False))
                record("download hub, HTTP, LFS blob", r["seconds"])
                shutil.rmtree(dest, ignore_errors=True)
                r = self.client(HUB_DOWNLOAD, {"repo": repo, "path": "xet.bin", "dest": str(dest)},
                                self.hub_env(self.trove_url, xet=False))
                record("download hub, HTTP, Xet bridge", r["seconds"])
                shutil.rmtree(dest, ignore_errors=True)
                peak = max(peak, watch.peak)

            served = self.nginx_root / repo / "resolve" / "main"
            served.mkdir(parents=True, exist_ok=True)
            os.link(src_lfs, served / "f.bin")
            r = self.client(HUB_DOWNLOAD, {"repo": repo, "path": "f.bin", "dest": str(dest)},
                            self.hub_env(self.nginx_url, xet=False))
            record("download hub, HTTP, nginx", r["seconds"])
            shutil.rmtree(dest, ignore_errors=True)
            out = self.work / "sim-out.bin"
            r = self.client(XET_DOWNLOAD, {"endpoint": self.sim_url, "token": "x", "hash": sim_hash,
                                           "size": size, "dest": str(out)}, {})
            record("download hf_xet <- simulation CAS", r["seconds"])
            self.drop(out)
            shutil.rmtree(served, ignore_errors=True)
            self.drop(src)
            self.drop(src_lfs)

        med = {k: statistics.median(v) for k, v in results.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
        return {"gib": self.args.gib, "rounds": self.args.rounds, "mib_per_s": med,
                "trove_cpu_s_per_gib": cpu_med,
                "trove_idle_rss_mib": idle_rss / 1024, "trove_peak_rss_mib": peak / 1024}


def report(r: dict) -> None:
    m = r["mib_per_s"]

    def ratio(a, b):
        return m[a] / m[b]

    print("\nmedian throughput (MiB/s) of a %.1f GiB file, %d rounds" % (r["gib"], r["rounds"]))
    for k, v in m.items():
        print(f"  {k:36s} {v:9.1f}   Trove CPU {r['trove_cpu_s_per_gib'][k]:5.2f} s/GiB")
    checks = [
        ("Xet upload / LFS upload (hub)", ratio("upload   hub, Xet", "upload   hub, LFS"), 1.0),
        ("Xet download / LFS download (hub)", ratio("download hub, Xet (hf_xet)", "download hub, HTTP, LFS blob"), 1.0),
        ("hf_xet download via Trove / client over nginx", ratio("download hub, Xet (hf_xet)", "download hub, HTTP, nginx"), 2.0),
        ("Trove CAS upload / simulation CAS upload", ratio("upload   hf_xet -> Trove CAS", "upload   hf_xet -> simulation CAS"), None),
        ("Trove hf_xet download / simulation download", ratio("download hub, Xet (hf_xet)", "download hf_xet <- simulation CAS"), None),
        ("Xet bridge (HTTP) / LFS blob (HTTP)", ratio("download hub, HTTP, Xet bridge", "download hub, HTTP, LFS blob"), None),
    ]
    print("\nratios")
    for name, value, aim in checks:
        verdict = "" if aim is None else ("  aim >= %.1f: %s" % (aim, "met" if value >= aim else "NOT met"))
        print(f"  {name:48s} {value:6.2f}{verdict}")
    growth = r["trove_peak_rss_mib"] - r["trove_idle_rss_mib"]
    print(f"\nTrove RSS: idle {r['trove_idle_rss_mib']:.0f} MiB, peak {r['trove_peak_rss_mib']:.0f} MiB, "
          f"growth {growth:.0f} MiB (aim < 128: {'met' if growth < 128 else 'NOT met'})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trove", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--python", required=True, help="python with huggingface_hub and hf_xet")
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench-dir", default="/var/tmp")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    bench = Bench(args)
    try:
        result = bench.run()
    except BaseException:
        for name in ("trove.log", "sim.log", "nginx-error.log"):
            log = bench.work / name
            if log.exists():
                print(f"--- {name} (last 30 lines) ---", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
        raise
    finally:
        bench.stop_all()
        shutil.rmtree(bench.work, ignore_errors=True)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
