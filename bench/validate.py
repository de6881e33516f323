#!/usr/bin/env python3
"""Times `nimbus validate` on generated repositories of 10,000 and 100,000 resources, in YAML
and in KDL, and prints wall time (median of several runs) and peak memory (max RSS).

usage: bench/validate.py [--nimbus PATH] [--sizes 10000,100000] [--runs N]
Builds the release binary first unless --nimbus is given. On a shared or virtual machine,
run times vary by tens of percent from run to run; the minimum is the steadier figure. Repositories are generated once
into $NIMBUS_BENCH_DIR (default /tmp/nimbus-bench) and reused.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_once(nimbus, repo):
    start = time.perf_counter()
    proc = subprocess.Popen([nimbus, "validate", repo], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"nimbus validate {repo} exited {code}:\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nimbus")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    nimbus = args.nimbus
    if not nimbus:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "nimbus"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        nimbus = os.path.join(target, "release", "nimbus")
    bench_dir = os.environ.get("NIMBUS_BENCH_DIR", "/tmp/nimbus-bench")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    print(f"{'syntax':<6} {'resources':>10} {'median':>10} {'min':>10} {'peak RSS':>10}  runs")
    for syntax in ("yaml", "kdl"):
        for size in sizes:
            repo = os.path.join(bench_dir, f"{syntax}-{size}")
            if not os.path.isdir(repo):
                subprocess.run([sys.executable, os.path.join(HERE, "gen_repo.py"), repo, str(size), syntax], check=True)
            run_once(nimbus, repo)  # warm the page cache
            runs = args.runs if size <= 10000 else max(1, args.runs // 2)
            samples = [run_once(nimbus, repo) for _ in range(runs)]
            times = [t for t, _ in samples]
            peak = max(m for _, m in samples)
            median = statistics.median(times)
            results[(syntax, size)] = (median, min(times))
            print(f"{syntax:<6} {size:>10} {median * 1000:>8.0f}ms {min(times) * 1000:>8.0f}ms {peak:>8.1f}MiB  {runs}")
    print()
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for syntax in ("yaml", "kdl"):
            by_median = results[(syntax, large)][0] / results[(syntax, small)][0]
            by_min = results[(syntax, large)][1] / results[(syntax, small)][1]
            print(f"{syntax}: {large} resources take {by_median:.1f}x (median) / {by_min:.1f}x (min) the time of {small}")
    for size in sizes:
        by_median = results[("kdl", size)][0] / results[("yaml", size)][0]
        by_min = results[("kdl", size)][1] / results[("yaml", size)][1]
        print(f"kdl/yaml at {size}: {by_median:.2f}x (median) / {by_min:.2f}x (min)")


if __name__ == "__main__":
    main()
