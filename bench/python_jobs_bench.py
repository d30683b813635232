#!/usr/bin/env python3
"""Python jobs: `rq worker` (forking), `rq worker -w rq.SimpleWorker` and rq-worker `--python`
(pool and fork mode, concurrency 1 and 4), in one run.

Every worker drains the same kind of job: `bench_jobs.identity(i)`, a Python function that
returns its argument, enqueued by Python RQ as an application would. For each worker it prints
jobs/s (from the job hashes: first start to last end, so process start-up does not count), the
ratio to SimpleWorker and to the forking Worker, the peak RSS of the worker's whole process tree
during the run, and for rq-worker its own CPU per job (user + system of the rq-worker process
alone, not of its Python processes), from two run sizes so that start-up cancels out.

Usage (from the repository root, after `scripts/python-envs.sh rq2.12` and
`cargo build --release`):
    .venvs/rq2.12/bin/python bench/python_jobs_bench.py [--jobs 4000] [--fork-jobs 300]

This is a benchmark, not a test: nothing here asserts on time.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from redis import Redis
from rq import Queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rq_bench import busy_seconds, free_port, start_redis  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "python-fixtures")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def enqueue(redis, queue, n):
    q = Queue(queue, connection=redis)
    with redis.pipeline() as pipe:
        for i in range(n):
            q.enqueue("bench_jobs.identity", i, pipeline=pipe)
        pipe.execute()


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:  # children of every thread (rq-worker starts its Python processes from slot threads)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def own_cpu_seconds(pid):
    """utime + stime of the process itself (all its threads; not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run(cmd, url, queue, env, redis, n):
    """Run a (non-burst) worker until the queue's n jobs are finished; return (busy seconds,
    peak RSS of the process tree in kB, the worker's own CPU seconds)."""
    p = subprocess.Popen(cmd + ["--url", url, queue], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kb(tree(p.pid)))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        key = f"rq:finished:{queue}"
        deadline = time.monotonic() + 1800
        while redis.zcard(key) + redis.zcard(f"rq:failed:{queue}") < n:
            if p.poll() is not None:
                raise RuntimeError(f"worker exited {p.returncode}: {' '.join(cmd)}")
            if time.monotonic() > deadline:
                raise RuntimeError("timed out")
            time.sleep(0.05)
        cpu = own_cpu_seconds(p.pid)
        failed = redis.zcard(f"rq:failed:{queue}")
        if failed:
            raise RuntimeError(f"{failed} jobs failed under {' '.join(cmd)}")
    finally:
        stop.set()
        t.join()
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return busy_seconds(redis, queue), peak, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4000, help="jobs per SimpleWorker / rq-worker run")
    ap.add_argument("--fork-jobs", type=int, default=300, help="jobs for the (slow) forking Worker")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "rq-worker"))
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([FIXTURES] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    tmp = tempfile.mkdtemp(prefix="rqw-pybench-")
    port = free_port()
    server, redis = start_redis(port, tmp)
    url = f"redis://127.0.0.1:{port}/0"
    rq_bin = os.path.join(os.path.dirname(sys.executable), "rq")
    try:
        rows = []
        seq = [0]

        def measure(label, cmd, n, rust=False):
            seq[0] += 1
            queue = f"q{seq[0]}"
            enqueue(redis, queue, n)
            busy, peak, cpu = run(cmd, url, queue, env, redis, n)
            cpu_us = None
            if rust:
                # A second run of twice the size: (CPU(2N) - CPU(N)) / N cancels start-up.
                seq[0] += 1
                queue2 = f"q{seq[0]}"
                enqueue(redis, queue2, 2 * n)
                busy2, peak2, cpu2 = run(cmd, url, queue2, env, redis, 2 * n)
                cpu_us = (cpu2 - cpu) / n * 1e6
                busy, n, peak = busy2, 2 * n, max(peak, peak2)
            rate = n / busy if busy > 0 else float("nan")
            rows.append((label, n, rate, peak, cpu_us))
            print(f"{label}: {n} jobs, {rate:,.0f} jobs/s, peak RSS {peak / 1024:.0f} MiB"
                  + (f", rq-worker CPU {cpu_us:.0f} us/job" if cpu_us is not None else ""), flush=True)

        measure("rq worker (forking Worker)", [rq_bin, "worker", "-q"], args.fork_jobs)
        measure("rq worker -w rq.SimpleWorker", [rq_bin, "worker", "-q", "-w", "rq.SimpleWorker"], args.jobs)
        for mode in ("pool", "fork"):
            for c in (1, 4):
                cmd = [args.bin, "--python", sys.executable, "--python-mode", mode, "--preload", "bench_jobs",
                       "--concurrency", str(c), "--logging-level", "WARNING"]
                measure(f"rq-worker --python-mode {mode} -c {c}", cmd, args.jobs, rust=True)

        simple = rows[1][2]
        forking = rows[0][2]
        import rq
        print(f"\nPython jobs (bench_jobs.identity), rq {rq.__version__}, {os.cpu_count()} cores:")
        print("| worker | jobs | jobs/s | vs SimpleWorker | vs forking Worker | peak RSS (tree) | rq-worker CPU/job |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, n, rate, peak, cpu_us in rows:
            cpu = f"{cpu_us:.0f} us" if cpu_us is not None else "–"
            print(f"| {label} | {n} | {rate:,.0f} | {rate / simple:.1f}x | {rate / forking:.1f}x | "
                  f"{peak / 1024:.0f} MiB | {cpu} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
