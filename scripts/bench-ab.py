#!/usr/bin/env python3
"""Two builds of tracebox, A and B, measured against each other in one run: a hello world over
POST /execute, in rounds that alternate which build goes first, so that a machine that gets
busier or quieter during the run weighs on both alike. For a change on the one-shot path
(build A from the commit before it, B after):

    git worktree add /tmp/before HEAD~1 && (cd /tmp/before && cargo build --release)
    cargo build --release
    scripts/bench-ab.py --a /tmp/before/target/release/tracebox --b target/release/tracebox

Each build gets its own sandbox image (its own runners are compiled into it), a fresh data
directory and its own server; both are stopped, and their data directories removed, at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request


def serve(binary, image, mode):
    """A started server of `binary` on a free port: (process, url, data directory)."""
    data = tempfile.mkdtemp(prefix="tracebox-ab-")
    env = dict(
        os.environ,
        TRACEBOX_DATA_DIR=data,
        TRACEBOX_ADDR="127.0.0.1:0",
        TRACEBOX_IMAGE=image,
        TRACEBOX_ISOLATION=mode,
        TRACEBOX_POOL_SIZE="4",
        TRACEBOX_RECYCLE_MAX_RUNS="1000",
        TRACEBOX_LOG_FORMAT="json",
    )
    subprocess.run([binary, "image", "build"], env=env, check=True)
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    for line in process.stderr:
        found = re.search(r'"url":"([^"]+)"', line)
        if found:
            url = found.group(1)
            break
    if url is None:
        raise SystemExit(f"{binary} serve ended before it listened")
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
    return process, url, data


def wait_ready(url):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            health = json.loads(urllib.request.urlopen(url + "/health").read())
            if health.get("status") == "ok":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} never became healthy")


def hello(url, runs, pace):
    """Milliseconds of `runs` hello worlds, one at a time, `pace` seconds apart."""
    times = []
    body = json.dumps({"code": "print('hello')"}).encode()
    for _ in range(runs):
        started = time.perf_counter()
        reply = json.loads(urllib.request.urlopen(urllib.request.Request(url + "/execute", data=body)).read())
        if reply.get("stdout") != "hello\n":
            raise SystemExit(f"{url}: unexpected reply {reply}")
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(pace)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="the build to compare against (before)")
    parser.add_argument("--b", required=True, help="the build to measure (after)")
    parser.add_argument("--mode", choices=["recycle", "fresh"], default="recycle")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--pace", type=float, help="seconds between runs (default: 0 for recycle, 0.25 for fresh)")
    args = parser.parse_args()
    pace = args.pace if args.pace is not None else (0.0 if args.mode == "recycle" else 0.25)
    servers = {}
    try:
        for name, binary in (("A", args.a), ("B", args.b)):
            servers[name] = serve(os.path.abspath(binary), f"tracebox-sandbox:ab-{name.lower()}", args.mode)
        for _, url, _ in servers.values():
            wait_ready(url)
            hello(url, 3, pace)  # warm-up
        times = {"A": [], "B": []}
        for round_ in range(args.rounds):
            order = ["A", "B"] if round_ % 2 == 0 else ["B", "A"]
            for name in order:
                times[name] += hello(servers[name][1], args.per_round, pace)
            print(f"[ab] round {round_ + 1}/{args.rounds}", flush=True, file=__import__("sys").stderr)
    finally:
        for process, _, data in servers.values():
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
            shutil.rmtree(data, ignore_errors=True)
    print(f"hello world, {args.mode}, {args.rounds} alternating rounds of {args.per_round}, pace {pace} s")
    print("| build | n | median ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, binary in (("A", args.a), ("B", args.b)):
        ordered = sorted(times[name])
        at = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))]  # noqa: E731
        print(f"| {name} `{binary}` | {len(ordered)} | {statistics.median(ordered):.1f} | {at(0.9):.1f} | {at(0.99):.1f} |")
    ratio = statistics.median(times["B"]) / statistics.median(times["A"])
    print(f"B/A median: {ratio:.2f}")


if __name__ == "__main__":
    main()
