"""Two builds of trove-infer's embed_bench example, alternated on one model folder: the
CPU-time and wall-clock rates of each (min / median / max over the rounds), the ratio of
the medians, the load average, and the largest difference between the two builds' first
embeddings (a change that should not move results must print 0). Used for
docs/inference.md, Benchmark.

    python3 bench/embed_ab.py BEFORE_DIR AFTER_DIR MODEL_DIR [CALLS] [BATCH] [ROUNDS]

BEFORE_DIR and AFTER_DIR hold an `embed_bench` each (`cargo build --release -p trove-infer
--example embed_bench`, copied out of the target directory); MODEL_DIR a model folder as
bench/inference.sh writes it. Each round runs `embed_bench MODEL_DIR CALLS BATCH 1` of each
build, the order swapped every round.
"""
import json
import os
import statistics
import subprocess
import sys


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    before, after, model = sys.argv[1:4]
    calls, batch, rounds = (sys.argv[4:5] or ["200"])[0], (sys.argv[5:6] or ["1"])[0], int((sys.argv[6:7] or ["10"])[0])
    builds = {"before": os.path.join(before, "embed_bench"), "after": os.path.join(after, "embed_bench")}
    rates = {name: {"rate": [], "cpu_rate": []} for name in builds}
    first = {}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        order = list(builds.items()) if r % 2 == 0 else list(reversed(builds.items()))
        for name, exe in order:
            out = subprocess.run([exe, model, calls, batch, "1"], capture_output=True, text=True, check=True)
            line = json.loads(out.stdout.strip().splitlines()[-1])
            for key in ("rate", "cpu_rate"):
                rates[name][key].append(line[key])
            first[name] = line["first"]
        loads.append(os.getloadavg()[0])
    diff = max(abs(a - b) for a, b in zip(first["before"], first["after"], strict=True))
    print(f"load average {min(loads):.1f}-{max(loads):.1f}; largest |before - after| of the first embedding: {diff:.3g}")
    for name, by_key in rates.items():
        for key, xs in by_key.items():
            print(f"{name:7} {key:9} {min(xs):8.1f} / {statistics.median(xs):8.1f} / {max(xs):8.1f}")
    for key in ("rate", "cpu_rate"):
        ratio = statistics.median(rates["after"][key]) / statistics.median(rates["before"][key])
        print(f"after / before, {key}: {ratio:.3f}")


if __name__ == "__main__":
    main()
