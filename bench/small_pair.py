#!/usr/bin/env python3
"""Two Trove binaries side by side on small-file downloads, with nginx as the reference, in one
run: the request rate and the server's CPU per request of each, round by round, the binaries
alternated within each case so that the machine's other load falls on both alike.

    bench/small_pair.py --before /tmp/old-trove --after target/release/trove \\
        [--rounds 4] [--wrk-seconds 3] [--sizes 4k,64k] [--dir /var/tmp]

Each binary serves its own fresh data dir (`trove serve --listen 127.0.0.1:0`); both get a
model repo with the same files — for each size a regular file (a git blob) and an LFS file
(chunks in a xorb) — and nginx serves copies of the same bytes. Every case (file, wrk at 1, 8
and 64 connections, with the admin token, as bench/core.sh measures) runs on `before`, `after`
and nginx in each round, `before` first in odd rounds and `after` first in even ones.
Prints min / median / max of requests/s per case, the median CPU-µs per request, the load
average before and after, and the cores other processes used; writes the figures to
bench/out/small-pair-<time>.json. Standard library, `wrk` and `nginx` only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core_helper as ch  # noqa: E402  (the helpers bench/core.sh measures with)

CONNS = (1, 8, 64)


def start_trove(binary: str, data: Path, log_dir: Path) -> tuple[subprocess.Popen, str]:
    out = open(log_dir / f"{data.name}.out", "wb")
    err = open(log_dir / f"{data.name}.err", "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
        stdout=out,
        stderr=err,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (log_dir / f"{data.name}.out").read_text(errors="replace")
        m = re.search(r"http://127\.0\.0\.1:[0-9]+", text)
        if m:
            url = m.group(0)
            for _ in range(300):
                try:
                    status, _ = ch.request(f"{url}/healthz", "GET", None, {})
                    if status == 200:
                        return proc, url
                except OSError:
                    pass
                time.sleep(0.1)
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{binary} did not start: {(log_dir / f'{data.name}.err').read_text()[-2000:]}")


def start_nginx(work: Path, access_log: bool = False) -> tuple[subprocess.Popen, str]:
    """nginx serving `work`'s files; with `access_log`, one line per request written to a file
    as it is served (nginx's default: no buffer), as Trove's default access log does."""
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    conf_dir = work / ("nginx-log" if access_log else "nginx")
    (conf_dir / "logs").mkdir(parents=True)
    log_line = f"access_log {conf_dir}/logs/access.log;" if access_log else "access_log off;"
    (conf_dir / "nginx.conf").write_text(
        f"""worker_processes auto;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    {log_line}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {conf_dir}/client_body;
    proxy_temp_path {conf_dir}/proxy;
    fastcgi_temp_path {conf_dir}/fastcgi;
    uwsgi_temp_path {conf_dir}/uwsgi;
    scgi_temp_path {conf_dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /files/ {{ alias {work}/; }}
    }}
}}
"""
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-g", "daemon off;"],
        stderr=open(conf_dir / "logs" / "stderr.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            ch.request(f"{url}/", "GET", None, {})
            return nginx, url
        except OSError:
            time.sleep(0.1)
    nginx.terminate()
    raise SystemExit("nginx did not start")


def seed(trove: ch.Trove, files: dict[str, bytes], work: Path) -> str:
    repo = trove.create_repo("bench-small")
    lfs, regular = {}, {}
    for name, data in files.items():
        if name.startswith("lfs-"):
            oid = __import__("hashlib").sha256(data).hexdigest()
            trove.lfs_upload(repo, ch.Body([(work / name, 0, len(data))]), oid)
            lfs[name] = (oid, len(data))
        else:
            regular[name] = data
    trove.commit_lfs(repo, lfs, regular)
    return repo


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the reference trove binary")
    p.add_argument("--after", required=True, help="the trove binary measured against it")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--wrk-seconds", type=int, default=3)
    p.add_argument("--sizes", default="4k,64k")
    p.add_argument("--dir", default="/var/tmp", help="where the temp dir goes (on disk, not tmpfs)")
    p.add_argument("--nginx-access-log", action="store_true",
                   help="also measure a second nginx that writes an access log line per request, "
                   "as Trove does by default ([log] access)")
    args = p.parse_args()
    sizes = [(label, n) for key, label, n in ch.SMALL_FILES if key in args.sizes.split(",")]
    if not sizes:
        raise SystemExit(f"--sizes {args.sizes}: none of 4k, 64k")

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="trove-pair.") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx's workers read the files as an unprivileged user
        try:
            files = {}
            for _, n in sizes:
                for kind in ("git", "lfs"):
                    name = f"{kind}-{n}.bin"
                    files[name] = os.urandom(n)
                    (work / name).write_bytes(files[name])
            servers: dict[str, tuple[ch.Trove, str]] = {}
            for role, binary in (("before", args.before), ("after", args.after)):
                proc, url = start_trove(binary, work / f"data-{role}", work)
                procs.append(proc)
                token = (work / f"data-{role}" / "admin-token").read_text().strip()
                trove = ch.Trove(url, token, proc.pid)
                try:
                    servers[role] = (trove, seed(trove, files, work))
                except SystemExit:
                    sys.stderr.write((work / f"data-{role}.err").read_text(errors="replace")[-3000:])
                    raise
            nginx, nginx_url = start_nginx(work)
            procs.append(nginx)
            refs = {"nginx": (nginx_url, nginx.pid)}
            if args.nginx_access_log:
                logging_nginx, logging_url = start_nginx(work, access_log=True)
                procs.append(logging_nginx)
                refs["nginx+log"] = (logging_url, logging_nginx.pid)
            script = work / "wrk-done.lua"
            script.write_text(ch.WRK_SCRIPT)

            cases = [
                (f"{label} {'git' if kind == 'git' else 'LFS'} c={c}", f"{kind}-{n}.bin", c)
                for label, n in sizes
                for kind in ("git", "lfs")
                for c in CONNS
            ]
            results = {name: {"before": [], "after": [], **{ref: [] for ref in refs}}
                       for name, _, _ in cases}
            load = {"before": loadavg(), "rounds": []}
            other_cores = []
            busy = ch.machine_busy_cores()
            for r in range(1, args.rounds + 1):
                order = ("before", "after") if r % 2 else ("after", "before")
                with ch.OtherLoad(*(pr.pid for pr in procs)) as other:
                    for name, fname, c in cases:
                        for role in (*order, *refs):
                            if role in refs:
                                ref_url, pid = refs[role]
                                url, headers = f"{ref_url}/files/{fname}", []
                            else:
                                trove, repo = servers[role]
                                url = f"{trove.url}/{repo}/resolve/main/{fname}"
                                pid, headers = trove.pid, [f"Authorization: Bearer {trove.token}"]
                            t = ch.wrk_download(url, headers, c, args.wrk_seconds, script, pid)
                            if t.errors:
                                ch.log(f"{name} {role}: {t.errors} errors")
                            results[name][role].append(
                                {"req_s": t.req_s, "cpu_us_per_req": t.cpu_seconds / max(t.requests, 1) * 1e6}
                            )
                other_cores.append(round(other.cores, 2))
                load["rounds"].append(loadavg())
                ch.log(f"round {r}/{args.rounds} done; load {' '.join(load['rounds'][-1])}, "
                       f"other processes {other.cores:.2f} cores")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def mmm(xs: list[float]) -> str:
        return f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f}"

    print(f"\nsmall files, {args.rounds} rounds, wrk {args.wrk_seconds}s; load average before "
          f"{' '.join(load['before'])}, after each round: {'; '.join(' '.join(x) for x in load['rounds'])}; "
          f"busy before {busy:.2f} cores, other processes per round {other_cores} cores")
    logged = "nginx+log" in next(iter(results.values()))
    print("| file, wrk connections | before req/s (min / median / max) | after req/s | median after/before "
          "| CPU-µs/req before → after (median) | nginx req/s (median) | after/nginx |"
          + (" nginx+log req/s | after/nginx+log |" if logged else ""))
    print("| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if logged else ""))
    for name, _, _ in cases:
        res = results[name]
        b = [x["req_s"] for x in res["before"]]
        a = [x["req_s"] for x in res["after"]]
        n = [x["req_s"] for x in res["nginx"]]
        cb = statistics.median(x["cpu_us_per_req"] for x in res["before"])
        ca = statistics.median(x["cpu_us_per_req"] for x in res["after"])
        extra = ""
        if logged:
            nl = [x["req_s"] for x in res["nginx+log"]]
            extra = f" {statistics.median(nl):.0f} | {statistics.median(a) / statistics.median(nl):.2f} |"
        print(f"| {name} | {mmm(b)} | {mmm(a)} | {statistics.median(a) / statistics.median(b):.2f} "
              f"| {cb:.0f} → {ca:.0f} | {statistics.median(n):.0f} | {statistics.median(a) / statistics.median(n):.2f} |"
              + extra)
    out_dir = Path(__file__).resolve().parent / "out"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"small-pair-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), "load": load, "busy_before": busy,
                               "other_cores": other_cores, "results": results}, indent=1))
    print(f"\nfigures: {out}")


if __name__ == "__main__":
    main()
