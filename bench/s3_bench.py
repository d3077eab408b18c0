"""Measures one large object through Trove in S3 mode against the S3 server directly (same
object, same run, same HTTP client). Called by bench/s3.sh, which starts the servers.

Direct:   PUT and GET of the object on the S3 server (SigV4, UNSIGNED-PAYLOAD).
Upload:   the LFS basic transfer through Trove (batch, PUT, verify): hashed, chunked into
          xorbs and published into the bucket before the PUT is answered.
Download: streaming: GET /resolve (the file is rebuilt from its xorbs in the bucket as it
          streams); redirect: the Xet reconstruction's presigned URLs fetched straight from
          the bucket with their Range headers (the bytes a Xet client fetches; decoding them
          is the client's own work and not timed), one at a time and --fetch-concurrency at
          a time (hf_xet fetches a reconstruction's ranges concurrently); controls without
          Trove: the direct object fetched as ranges of the same sizes, both ways.
Client:   with --real-client, hf_hub_download through hf_xet (redirect mode) into a file
          against a direct GET of the same bytes written to a file.
Prints medians and ratios (Trove / direct)."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

import httpx

BUF = 1 << 20


def sigv4_headers(method: str, url: str, key: str, secret: str, region: str) -> dict[str, str]:
    """SigV4 headers of a request with an unsigned payload (the body is streamed)."""
    u = urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    host = u.netloc
    headers = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        method, quote(u.path, safe="/-_.~"), "",
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, "UNSIGNED-PAYLOAD",
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in headers.items() if k != "host"}
    out["authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    return out


def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * BUF)
            f.write(os.urandom(n))
            left -= n


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BUF):
            h.update(chunk)
    return h.hexdigest()


def file_body(path: str):
    with open(path, "rb") as f:
        while chunk := f.read(BUF):
            yield chunk


def cpu_secs(pid: int | None) -> float:
    """User + system CPU seconds process `pid` has used so far (0 without a pid)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_all(a: argparse.Namespace) -> tuple[float, float, float]:
    """CPU seconds used so far by the S3 server, Trove and this client."""
    return cpu_secs(a.s3_pid), cpu_secs(a.trove_pid), time.process_time()


def cpu_since(a: argparse.Namespace, before: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(x - y for x, y in zip(cpu_all(a), before))


def timed_get(http: httpx.Client, url: str, headers: dict[str, str],
              first_byte: list[float] | None = None) -> tuple[float, int]:
    """Seconds and bytes of one GET; the time to its first bytes appended to `first_byte`."""
    start = time.perf_counter()
    n = 0
    with http.stream("GET", url, headers=headers) as r:
        assert r.status_code in (200, 206), (url, r.status_code, r.read()[:300])
        for chunk in r.iter_raw(BUF):
            if n == 0 and first_byte is not None:
                first_byte.append(time.perf_counter() - start)
            n += len(chunk)
    return time.perf_counter() - start, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--s3-endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--trove", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--file", required=True, help="scratch path for the object")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trove-pid", type=int, help="to report Trove's CPU per GiB uploaded")
    ap.add_argument("--s3-pid", type=int, help="to report the S3 server's CPU per GiB uploaded")
    ap.add_argument("--s3-name", default="s3s-fs", help="the S3 server's name in the CPU rows")
    ap.add_argument("--upload-only", action="store_true",
                    help="the direct PUT and the Trove upload only (no downloads, no commit)")
    ap.add_argument("--fetch-concurrency", type=int, default=4,
                    help="fetches in flight for the concurrent redirect row")
    ap.add_argument("--pairs", type=int, default=4,
                    help="alternated direct GET / one-at-a-time redirect pairs per round")
    ap.add_argument("--put-connection", choices=("shared", "fresh"), default="shared",
                    help="the Trove upload's PUT on the connection the batch request used "
                         "(shared: the server's HTTP stack serves it, as for one transfer at a "
                         "time), or on a new one (fresh: its first request, as git-lfs's "
                         "parallel transfers open; the body is then read by the server's "
                         "connection driver into its own reused buffers)")
    ap.add_argument("--real-client", action="store_true",
                    help="also hf_hub_download through hf_xet (HF_ENDPOINT must name Trove)")
    a = ap.parse_args()
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    size = a.size_mib << 20
    mib = size / (1 << 20)
    http = httpx.Client(timeout=600)
    auth = {"authorization": f"Bearer {a.token}"}
    res: dict[str, list[float]] = {k: [] for k in
                                   ("direct_put", "direct_get", "direct_ranges", "direct_ranges_conc", "trove_upload", "trove_stream",
                                    "trove_redirect", "trove_redirect_meta", "trove_redirect_rec",
                                    "trove_redirect_fetch", "trove_redirect_conc", "trove_redirect_conc_meta",
                                    "trove_redirect_conc_rec", "trove_redirect_conc_fetch",
                                    "client_xet", "client_direct",
                                    "direct_get_near", "paired", "first_byte_redirect", "first_byte_direct", "cpu_get_direct", "cpu_get_stream", "cpu_get_seq", "cpu_get_conc",
                                    "cpu_s3_direct", "cpu_s3_upload", "cpu_trove_upload")}

    for rnd in range(a.rounds):
        # Fresh random bytes each round: the chunk store would dedup a repeat into nothing.
        write_random(a.file, size)
        oid = sha256_file(a.file)
        # Direct.
        url = f"{a.s3_endpoint}/{a.bucket}/direct-{rnd}.bin"
        h = sigv4_headers("PUT", url, key, secret, a.region)
        h["content-length"] = str(size)
        t, s3_cpu = time.perf_counter(), cpu_secs(a.s3_pid)
        r = http.put(url, content=file_body(a.file), headers=h)
        assert r.status_code == 200, r.text[:300]
        res["direct_put"].append(time.perf_counter() - t)
        res["cpu_s3_direct"].append(cpu_secs(a.s3_pid) - s3_cpu)
        if not a.upload_only:
            cpu0 = cpu_all(a)
            secs, n = timed_get(http, url, sigv4_headers("GET", url, key, secret, a.region))
            assert n == size
            res["direct_get"].append(secs)
            res["cpu_get_direct"].append(cpu_since(a, cpu0))

        # Through Trove, in a fresh repo.
        name = f"bench-{rnd}-{int(time.time())}"
        r = http.post(f"{a.trove}/api/repos/create", json={"name": name, "type": "model"}, headers=auth)
        assert r.status_code == 200, r.text[:300]
        repo = r.json()["url"].rstrip("/").split("/", 3)[3]
        t, s3_cpu, trove_cpu = time.perf_counter(), cpu_secs(a.s3_pid), cpu_secs(a.trove_pid)
        batch = http.post(f"{a.trove}/{repo}.git/info/lfs/objects/batch",
                          json={"operation": "upload", "transfers": ["basic"],
                                "objects": [{"oid": oid, "size": size}]},
                          headers={**auth, "accept": "application/vnd.git-lfs+json"})
        assert batch.status_code == 200, batch.text[:300]
        actions = batch.json()["objects"][0]["actions"]
        up = actions["upload"]
        put_headers = {**up.get("header", {}), "content-length": str(size)}
        if a.put_connection == "fresh":
            with httpx.Client(timeout=600) as own:
                r = own.put(up["href"], content=file_body(a.file), headers=put_headers)
        else:
            r = http.put(up["href"], content=file_body(a.file), headers=put_headers)
        assert r.status_code == 200, r.text[:300]
        if "verify" in actions:
            v = actions["verify"]
            r = http.post(v["href"], json={"oid": oid, "size": size}, headers={**auth, **v.get("header", {})})
            assert r.status_code == 200, r.text[:300]
        res["trove_upload"].append(time.perf_counter() - t)
        res["cpu_s3_upload"].append(cpu_secs(a.s3_pid) - s3_cpu)
        res["cpu_trove_upload"].append(cpu_secs(a.trove_pid) - trove_cpu)
        if a.upload_only:
            continue
        lines = [json.dumps({"key": "header", "value": {"summary": "bench", "description": ""}}),
                 json.dumps({"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256",
                                                          "oid": oid, "size": size}})]
        r = http.post(f"{a.trove}/api/models/{repo}/commit/main", content="\n".join(lines) + "\n",
                      headers={**auth, "content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text[:300]

        cpu0 = cpu_all(a)
        secs, n = timed_get(http, f"{a.trove}/{repo}/resolve/main/big.bin", auth)
        assert n == size, n
        res["trove_stream"].append(secs)
        res["cpu_get_stream"].append(cpu_since(a, cpu0))

        # Redirect: the Xet reconstruction (asked of Trove, timed) and its presigned fetches,
        # first one after another, then `--fetch-concurrency` at a time (the client's way:
        # hf_xet fetches a reconstruction's ranges concurrently). Each fetch is timed, and the
        # time to the reconstruction (token, listing, reconstruction) kept apart.
        # The direct GET again, just before: the redirect rows are also compared with it, so
        # that load changing between the start of the round and now weighs less.
        secs, n = timed_get(http, url, sigv4_headers("GET", url, key, secret, a.region))
        res["direct_get_near"].append(secs)
        for mode, workers in (("seq", 1), ("conc", a.fetch_concurrency)):
            cpu0 = cpu_all(a)
            t = time.perf_counter()
            tok = http.get(f"{a.trove}/api/models/{repo}/xet-read-token/main", headers=auth).json()
            tree = http.get(f"{a.trove}/api/models/{repo}/tree/main", headers=auth).json()
            xet_hash = next(e["xetHash"] for e in tree if e["path"] == "big.bin")
            t_rec = time.perf_counter()
            rec = http.get(f"{tok['casUrl']}/v2/reconstructions/{xet_hash}",
                           headers={"authorization": f"Bearer {tok['accessToken']}"})
            assert rec.status_code == 200, rec.text[:300]
            t_fetch = time.perf_counter()
            jobs = []
            for fetches in rec.json()["xorbs"].values():
                for f in fetches:
                    b = f["ranges"][0]["bytes"]
                    assert urlsplit(f["url"]).netloc == urlsplit(a.s3_endpoint).netloc, f["url"]
                    jobs.append((f["url"], {"range": f"bytes={b['start']}-{b['end']}"}))
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(lambda j: timed_get(http, *j), jobs))
            end = time.perf_counter()
            fetched = sum(n for _, n in done)
            assert fetched >= size * 0.99, (fetched, size)
            row = "trove_redirect" if mode == "seq" else "trove_redirect_conc"
            res[row].append(end - t)
            res[f"cpu_get_{mode}"].append(cpu_since(a, cpu0))
            res[f"{row}_meta"].append(t_rec - t)
            res[f"{row}_rec"].append(t_fetch - t_rec)
            res[f"{row}_fetch"].append(end - t_fetch)
            if rnd == 0:
                print(f"round 0, redirect {mode} ({workers} at a time): {len(jobs)} fetches, MiB: "
                      + " ".join(f"{n / (1 << 20):.1f}" for _, n in done))
                print("  MiB/s each: " + " ".join(f"{n / (1 << 20) / s:.0f}" for s, n in done))

        # Paired: the direct GET and the one-at-a-time redirect (the last reconstruction's
        # URLs, still valid) alternated A B B A ... `--pairs` times each, the ratio taken per
        # adjacent pair: load that comes and goes (a shared machine) then hits both sides
        # alike, where one GET early in the round against the redirect later does not.
        def redirect_once() -> float:
            t = time.perf_counter()
            for j in jobs:
                timed_get(http, *j, res["first_byte_redirect"])
            return time.perf_counter() - t

        def direct_once() -> float:
            return timed_get(http, url, sigv4_headers("GET", url, key, secret, a.region),
                             res["first_byte_direct"])[0]

        for i in range(a.pairs):
            first, second = (direct_once, redirect_once) if i % 2 == 0 else (redirect_once, direct_once)
            x, y = first(), second()
            d, r = (x, y) if i % 2 == 0 else (y, x)
            res["paired"].append(d / r)

        # Controls, Trove not involved: the direct object fetched as ranges of the same sizes
        # as the redirect's fetches (SigV4 headers, not presigned), one after another and
        # `--fetch-concurrency` at a time: what splitting the same bytes into these requests
        # does on the S3 server by itself.
        spans, start = [], 0
        for _, n in done:
            if start >= size:
                break
            spans.append((start, min(start + n, size) - 1))
            start += n

        def ranged(span: tuple[int, int]) -> tuple[float, int]:
            h = sigv4_headers("GET", url, key, secret, a.region)
            h["range"] = f"bytes={span[0]}-{span[1]}"
            return timed_get(http, url, h)

        for row, workers in (("direct_ranges", 1), ("direct_ranges_conc", a.fetch_concurrency)):
            t = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                assert sum(n for _, n in pool.map(ranged, spans)) == sum(e - b + 1 for b, e in spans)
            res[row].append(time.perf_counter() - t)

        if a.real_client:
            # The real client: hf_hub_download through hf_xet (redirect mode: the bytes come
            # straight from the bucket) into a file, against a direct GET of the same bytes
            # written to a file the same way.
            from huggingface_hub import hf_hub_download
            out = os.path.join(os.path.dirname(a.file), f"dl-{rnd}")
            t = time.perf_counter()
            got = hf_hub_download(repo, "big.bin", token=a.token, local_dir=out)
            res["client_xet"].append(time.perf_counter() - t)
            assert os.path.getsize(got) == size
            os.remove(got)
            t = time.perf_counter()
            with open(os.path.join(out, "direct.bin"), "wb") as f, \
                    http.stream("GET", url, headers=sigv4_headers("GET", url, key, secret, a.region)) as r:
                assert r.status_code == 200
                for chunk in r.iter_raw(BUF):
                    f.write(chunk)
            res["client_direct"].append(time.perf_counter() - t)
            shutil.rmtree(out)

    cpu_get = {k: [statistics.median(x[i] for x in v) for i in range(3)]
               for k, v in ((k, res.pop(k)) for k in ("cpu_get_direct", "cpu_get_stream", "cpu_get_seq", "cpu_get_conc")) if v}
    med = {k: statistics.median(v) for k, v in res.items() if v}
    rate = {k: mib / v for k, v in med.items()
            if not k.startswith(("cpu_", "first_byte_")) and k != "paired"}
    print(f"object: {mib:.0f} MiB, {a.rounds} rounds, medians")
    print(f"  direct S3 PUT          {rate['direct_put']:8.1f} MiB/s")
    if not a.upload_only:
        print(f"  direct S3 GET          {rate['direct_get']:8.1f} MiB/s")
    print(f"  Trove upload (LFS)     {rate['trove_upload']:8.1f} MiB/s   ratio {rate['trove_upload'] / rate['direct_put']:.2f}x of direct PUT")
    if not a.upload_only:
        print(f"  Trove download stream  {rate['trove_stream']:8.1f} MiB/s   ratio {rate['trove_stream'] / rate['direct_get']:.2f}x of direct GET")
        g = rate["direct_get"]
        print(f"  Trove download redirect{rate['trove_redirect']:8.1f} MiB/s   ratio {rate['trove_redirect'] / g:.2f}x of direct GET"
              f"   (fetches one at a time; per round "
              + " ".join(f"{mib / x / (mib / y):.2f}" for x, y in zip(res["trove_redirect"], res["direct_get"])) + ")")
        print(f"  Trove download redirect{rate['trove_redirect_conc']:8.1f} MiB/s   ratio {rate['trove_redirect_conc'] / g:.2f}x of direct GET"
              f"   ({a.fetch_concurrency} fetches at a time; per round "
              + " ".join(f"{mib / x / (mib / y):.2f}" for x, y in zip(res["trove_redirect_conc"], res["direct_get"])) + ")")
        print(f"  direct S3 ranged GETs  {rate['direct_ranges']:8.1f} MiB/s   ratio {rate['direct_ranges'] / g:.2f}x of direct GET"
              "   (control: the redirect's fetch sizes, one at a time, no Trove)")
        rc = rate["direct_ranges_conc"]
        print(f"  direct S3 ranged GETs  {rc:8.1f} MiB/s   ratio {rc / g:.2f}x of direct GET"
              f"   (control: the same, {a.fetch_concurrency} at a time; the concurrent redirect is "
              f"{rate['trove_redirect_conc'] / rc:.2f}x of it, per round "
              + " ".join(f"{y / x:.2f}" for x, y in zip(res["trove_redirect_conc"], res["direct_ranges_conc"])) + ")")
        pr = sorted(res["paired"])
        if pr:
            print(f"  redirect one at a time / direct GET, alternated in pairs: median {statistics.median(pr):.2f}, "
                  f"min {pr[0]:.2f}, max {pr[-1]:.2f} over {len(pr)} pairs")
            print(f"  time to first byte in the pairs (medians): direct GET {med['first_byte_direct'] * 1e3:.1f} ms, "
                  f"each redirect fetch {med['first_byte_redirect'] * 1e3:.1f} ms")
        near = res["direct_get_near"]
        print(f"  direct S3 GET, again just before the redirect rows {rate['direct_get_near']:.1f} MiB/s; redirect one at a "
              "time per round against it " + " ".join(f"{y / x:.2f}" for x, y in zip(res["trove_redirect"], near)))
        gib = size / (1 << 30)
        if a.trove_pid and a.s3_pid:
            print(f"  CPU seconds per GiB downloaded, {a.s3_name} / Trove / this client (medians): " + ", ".join(
                f"{label} " + " / ".join(f"{x / gib:.2f}" for x in cpu_get[k])
                for k, label in (("cpu_get_direct", "direct GET"), ("cpu_get_stream", "streaming"),
                                 ("cpu_get_seq", "redirect one at a time"),
                                 ("cpu_get_conc", "concurrent"))))
        for k, label in (("trove_redirect", "one at a time"), ("trove_redirect_conc", "concurrent")):
            print(f"    redirect {label}: token + listing {med[k + '_meta'] * 1e3:.0f} ms, reconstruction "
                  f"{med[k + '_rec'] * 1e3:.0f} ms, fetches {med[k + '_fetch'] * 1e3:.0f} ms "
                  f"(fetches alone {mib / med[k + '_fetch'] / g:.2f}x of direct GET)")
        if res["client_xet"]:
            c = rate["client_direct"]
            print(f"  direct S3 GET to a file{c:8.1f} MiB/s")
            print(f"  hf_hub_download (hf_xet, redirect){rate['client_xet']:8.1f} MiB/s   ratio {rate['client_xet'] / c:.2f}x of direct GET to a file"
                  "   (per round " + " ".join(f"{mib / x / (mib / y):.2f}" for x, y in zip(res["client_xet"], res["client_direct"])) + ")")
    if a.trove_pid and a.s3_pid:
        gib = size / (1 << 30)
        print("CPU seconds per GiB uploaded (medians; user + system, whole process):")
        print(f"  {a.s3_name + ',':8}direct PUT     {med['cpu_s3_direct'] / gib:8.2f}")
        print(f"  {a.s3_name + ',':8}Trove upload   {med['cpu_s3_upload'] / gib:8.2f}")
        print(f"  Trove,  Trove upload   {med['cpu_trove_upload'] / gib:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
