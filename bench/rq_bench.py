#!/usr/bin/env python3
"""Throughput, round trips and idle memory: Python `rq worker` versus rq-worker, in one run.

Starts a private redis-server on a free loopback port, pushes N no-op jobs
(`rq_worker.diag.noop`, enqueued by Python RQ exactly as an application would) through each
worker in burst mode, and prints jobs/s, the ratios, Redis round trips per job (counted by a
small TCP proxy between worker and Redis: one client write = one round trip, so a pipeline or a
script call counts once) and idle RSS.

Usage (from the repository root, after `scripts/python-envs.sh` made the venvs):
    .venvs/rq2.12/bin/python bench/rq_bench.py [--jobs 2000] [--bin target/release/rq-worker]
    .venvs/rq2.12/bin/python bench/rq_bench.py --metrics-overhead 5    # metrics on vs off only
    .venvs/rq2.12/bin/python bench/rq_bench.py --redis-instructions 500  # Redis's instructions/job

`--metrics-overhead N` runs rq-worker --concurrency 4 N times with metrics off and N times with
`--metrics-addr` on and /metrics scraped every second, alternating (off, on, off, on, ...) so that
both see the same machine, and prints the median jobs/s of each and their ratio.

This is a benchmark, not a test: nothing here asserts on time.
"""

import argparse
import contextlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from redis import Redis
from rq import Queue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "python-fixtures")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CountingProxy:
    """Forwards one TCP port to Redis and counts client writes (round trips)."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.writes = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, count):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    with self.lock:
                        self.writes += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def reset(self):
        with self.lock:
            self.writes = 0

    def count(self):
        with self.lock:
            return self.writes


def enqueue(redis, queue, n):
    q = Queue(queue, connection=redis)
    with redis.pipeline() as pipe:
        for _ in range(n):
            q.enqueue("rq_worker.diag.noop", pipeline=pipe)
        pipe.execute()


def busy_seconds(redis, queue):
    """Seconds from the first job's start to the last job's end, from the job hashes themselves:
    throughput without process start-up and shutdown, which differ a lot between the workers."""
    from datetime import datetime
    ids = redis.zrange(f"rq:finished:{queue}", 0, -1)
    with redis.pipeline(transaction=False) as p:
        for i in ids:
            p.hmget(b"rq:job:" + i, "started_at", "ended_at")
        rows = p.execute()
    parse = lambda b: datetime.strptime(b.decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
    starts = [parse(s) for s, e in rows if s and e]
    ends = [parse(e) for s, e in rows if s and e]
    if not starts:
        return float("nan")
    return (max(ends) - min(starts)).total_seconds()


def python_cmd(worker_class):
    cmd = [os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "--burst", "-q"]
    if worker_class:
        cmd += ["-w", worker_class]
    return cmd


def run_worker(cmd, url, queue, env):
    start = time.perf_counter()
    subprocess.run(cmd + ["--url", url, queue], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def idle_rss_kb(cmd, url, queue, env):
    p = subprocess.Popen([c for c in cmd if c not in ("--burst",)] + ["--url", url, queue], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        total = 0
        # The forking worker has no horse while idle; sum the process tree anyway.
        pids = [p.pid] + [int(x) for x in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                                        text=True).stdout.split()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total
    finally:
        p.terminate()
        p.wait(timeout=30)


def scrape_every_second(port, stop):
    """What a Prometheus server does: GET /metrics every second while the worker runs."""
    import urllib.request
    while not stop.wait(1.0):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            pass


@contextlib.contextmanager
def metrics_on(cmd, on):
    """`cmd`, with `--metrics-addr` and a scraper hitting /metrics every second while it runs
    when `on`; unchanged otherwise."""
    if not on:
        yield list(cmd)
        return
    port = free_port()
    stop = threading.Event()
    scraper = threading.Thread(target=scrape_every_second, args=(port, stop), daemon=True)
    scraper.start()
    try:
        yield list(cmd) + ["--metrics-addr", f"127.0.0.1:{port}"]
    finally:
        stop.set()
        scraper.join()


def metrics_overhead(args, redis, url, env, cmd):
    off, on = [], []
    for i in range(args.metrics_overhead):
        for label in ("off", "on"):
            queue = f"mo{i}{label}"
            enqueue(redis, queue, args.rust_jobs)
            with metrics_on(cmd, label == "on") as run_cmd:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                secs = run_worker(run_cmd, url, queue, env)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_us = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e6
            rate = args.rust_jobs / busy_seconds(redis, queue)
            (on if label == "on" else off).append((rate, cpu_us / args.rust_jobs))
            print(f"run {i + 1} metrics {label}: {rate:,.0f} jobs/s (first start to last end), "
                  f"{args.rust_jobs / secs:,.0f} jobs/s wall, worker CPU {cpu_us / args.rust_jobs:.1f} us/job",
                  flush=True)
    med = lambda v: sorted(v)[len(v) // 2]
    rates = lambda rows: [r for r, _ in rows]
    cpus = lambda rows: [c for _, c in rows]
    print(f"\nrq-worker --concurrency 4, {args.rust_jobs} no-op jobs per run, {len(off)} runs each "
          "(worker CPU: user + system time of the rq-worker process, per job):")
    print("| metrics | median jobs/s | median worker CPU us/job | jobs/s of each run |\n|---|---:|---:|---|")
    for label, rows in (("off", off), ("on, /metrics scraped every 1 s", on)):
        print(f"| {label} | {med(rates(rows)):,.0f} | {med(cpus(rows)):.1f} | "
              f"{', '.join(f'{r:,.0f}' for r in rates(rows))} |")
    print(f"\nratio on/off: throughput {med(rates(on)) / med(rates(off)):.3f}, "
          f"worker CPU per job {med(cpus(on)) / med(cpus(off)):.3f}")


def callgrind_instructions(cmd, url, queue, env, out):
    """Instructions the worker process executed (all threads), counted by callgrind."""
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd + ["--url", url, queue],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def metrics_instructions(args, redis, url, env, cmd):
    """Deterministic where wall-clock time is not: the worker's own instructions per job with
    metrics off and on (/metrics scraped every second), from two run sizes so that start-up and
    shutdown cancel out."""
    n = args.metrics_instructions
    tmp = tempfile.mkdtemp(prefix="rqw-cg-")
    per_job = {}
    for label in ("off", "on"):
        counts = []
        for size in (n, 2 * n):
            queue = f"cg{label}{size}"
            enqueue(redis, queue, size)
            with metrics_on(cmd, label == "on") as run_cmd:
                counts.append(callgrind_instructions(run_cmd, url, queue, env,
                                                     os.path.join(tmp, f"{queue}.out")))
            print(f"metrics {label}, {size} jobs: {counts[-1]:,} instructions", flush=True)
        per_job[label] = (counts[1] - counts[0]) / n
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nrq-worker --concurrency 4 under callgrind, instructions per job "
          f"((I(2N) - I(N)) / N, N = {n}):")
    print("| metrics | instructions/job |\n|---|---:|")
    print(f"| off | {per_job['off']:,.0f} |\n| on, /metrics scraped every 1 s | {per_job['on']:,.0f} |")
    print(f"\nratio on/off: {per_job['on'] / per_job['off']:.4f} "
          f"({(per_job['on'] / per_job['off'] - 1) * 100:+.2f}%)")


def start_redis(port, workdir, prefix=(), wait_secs=5):
    """A private redis-server on `port` (optionally under `prefix`, e.g. valgrind), nothing saved;
    returns (process, client) once it answers PING or `wait_secs` pass."""
    server = subprocess.Popen(list(prefix) + ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                              "--save", "", "--appendonly", "no", "--dir", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = Redis(port=port)
    deadline = time.monotonic() + wait_secs
    while time.monotonic() < deadline:
        try:
            redis.ping()
            break
        except Exception:
            time.sleep(0.05)
    return server, redis


def redis_instructions(args, env, cmd, python_cmds):
    """Redis's own instructions per job, counted by callgrind on a redis-server of its own: jobs
    are enqueued, the counters zeroed (callgrind_control -z), one worker drains the queue, the
    counters dumped. Runs of JOBS and 2*JOBS jobs cancel the worker's start-up and shutdown.
    Far steadier than time, though Redis's timer work during the run is counted too, so compare
    figures of the same JOBS taken in one sitting."""
    n = args.redis_instructions
    tmp = tempfile.mkdtemp(prefix="rqw-rcg-")
    port = free_port()
    out = os.path.join(tmp, "callgrind.out")
    server, redis = start_redis(port, tmp, ["valgrind", "--tool=callgrind",
                                            f"--callgrind-out-file={out}.%p"], wait_secs=60)
    try:
        url = f"redis://127.0.0.1:{port}/0"

        def run(label, worker_cmd, size):
            queue = f"rcg{label}{size}".replace(" ", "")
            enqueue(redis, queue, size)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            commands_before = redis.info("stats")["total_commands_processed"]
            run_worker(worker_cmd, url, queue, env)
            commands = redis.info("stats")["total_commands_processed"] - commands_before
            for f in os.listdir(tmp):
                if f.startswith("callgrind.out"):
                    os.remove(os.path.join(tmp, f))
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            dumps = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith("callgrind.out")]
            total = 0
            for d in dumps:
                with open(d) as fh:
                    for line in fh:
                        if line.startswith("summary:") or line.startswith("totals:"):
                            total = max(total, int(line.split()[1]))
            return total, commands

        rows = []
        for label, worker_cmd in [("rq-worker --concurrency 1", cmd)] + python_cmds:
            (i1, c1), (i2, c2) = run(label, worker_cmd, n), run(label, worker_cmd, 2 * n)
            rows.append((label, (i2 - i1) / n, (c2 - c1) / n))
            print(f"{label}: {n} jobs {i1:,} / {2 * n} jobs {i2:,} instructions", flush=True)
        print(f"\nRedis instructions per job under callgrind ((I(2N) - I(N)) / N, N = {n}, "
              "counters zeroed after enqueueing, so only the worker's commands count):")
        print("| worker | Redis instructions/job | Redis commands/job |\n|---|---:|---:|")
        for label, per_job, cmds in rows:
            print(f"| {label} | {per_job:,.0f} | {cmds:.1f} |")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000, help="jobs for the SimpleWorker run")
    ap.add_argument("--rust-jobs", type=int, default=20000, help="jobs per rq-worker run")
    ap.add_argument("--fork-jobs", type=int, default=300, help="jobs for the (slow) forking Worker")
    ap.add_argument("--rt-jobs", type=int, default=200, help="jobs for the round-trip count")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "rq-worker"))
    ap.add_argument("--metrics-overhead", type=int, default=0, metavar="N",
                    help="only compare metrics off/on at concurrency 4, N alternating runs each")
    ap.add_argument("--metrics-instructions", type=int, default=0, metavar="JOBS",
                    help="only count the worker's instructions per job with metrics off/on under "
                         "callgrind (runs of JOBS and 2*JOBS jobs: the difference cancels start-up)")
    ap.add_argument("--redis-instructions", type=int, default=0, metavar="JOBS",
                    help="only count Redis's instructions per job under callgrind (rq-worker and "
                         "SimpleWorker; runs of JOBS and 2*JOBS jobs)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rqw-bench-")
    port = free_port()
    server, redis = start_redis(port, tmp)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ, PYTHONPATH=FIXTURES + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("QUEUE_NAME", None)
        env.pop("WORKER_COUNT", None)
        ours = lambda c: [args.bin, "--burst", "-q", "--concurrency", str(c)]
        if args.metrics_overhead:
            metrics_overhead(args, redis, url, env, ours(4))
            return
        if args.metrics_instructions:
            metrics_instructions(args, redis, url, env, ours(4))
            return
        if args.redis_instructions:
            redis_instructions(args, env, ours(1),
                               [("rq worker -w rq.SimpleWorker", python_cmd("rq.SimpleWorker"))])
            return
        candidates = [
            ("rq worker (forking Worker)", python_cmd(None), args.fork_jobs),
            ("rq worker -w rq.SimpleWorker", python_cmd("rq.SimpleWorker"), args.jobs),
            ("rq-worker --concurrency 1", ours(1), args.rust_jobs),
            ("rq-worker --concurrency 4", ours(4), args.rust_jobs),
        ]
        proxy = CountingProxy(port)
        proxy_url = f"redis://127.0.0.1:{proxy.port}/0"
        rows = []
        for i, (name, cmd, n) in enumerate(candidates):
            queue = f"bench{i}"
            enqueue(redis, queue, n)
            secs = run_worker(cmd, url, queue, env)
            busy = busy_seconds(redis, queue)
            left = redis.llen(f"rq:queue:{queue}")
            # Round trips: a separate small run through the counting proxy.
            rt_queue = f"bench{i}rt"
            enqueue(redis, rt_queue, args.rt_jobs)
            proxy.reset()
            run_worker(cmd, proxy_url, rt_queue, env)
            trips = proxy.count() / args.rt_jobs
            rss = idle_rss_kb(cmd, url, f"idle{i}", env)
            rows.append((name, n, secs, n / secs, n / busy, trips, rss, left))
        simple = rows[1][3]
        simple_busy = rows[1][4]
        print(f"\nRedis {redis.info('server')['redis_version']}, {os.cpu_count()} cores, "
              f"python rq {__import__('rq').__version__}\n")
        print("| worker | jobs | wall s | jobs/s (wall) | vs SimpleWorker | jobs/s (first start to last end) "
              "| vs SimpleWorker | round trips/job | idle RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, n, secs, rate, busy_rate, trips, rss, left in rows:
            note = "" if left == 0 else f" ({left} left!)"
            print(f"| {name}{note} | {n} | {secs:.2f} | {rate:,.0f} | {rate / simple:.1f}x | {busy_rate:,.0f} | "
                  f"{busy_rate / simple_busy:.1f}x | {trips:.2f} | {rss / 1024:.1f} |")
        print("\n(wall: process start to exit, start-up and shutdown included; first start to last end: from the "
              "jobs' own started_at/ended_at)")
        print("\n(round trips per job are measured on a separate run of "
              f"{args.rt_jobs} jobs, including startup and shutdown amortised over them)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
