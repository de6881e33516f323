#!/usr/bin/env python3
"""GitOps figures (issue 5), printed, not asserted.

  sudo python3 bench/gitops.py        (root: it brings up 3 test hosts with testbed/hosts-up.sh)

1. Push to applied through the webhook: a one-file change (a File's content on 3 real hosts,
   over SSH) pushed PUSHES times (default 20) to a git daemon on loopback, each followed by a
   signed webhook; the time from `git push` to /status showing the commit applied.
   Targets: p50 under 1.5 s, p99 under 3 s.
2. Push to applied with polling every 5 s (no webhook), POLLED pushes (default 10), each at a
   random moment of the poll cycle (a uniform wait of 0-5 s before it).
   Target: p50 under 3.5 s. (Argo CD polls every 180 s by default, Flux every 60 s.)
3. A no-change poll (fetch plus diff) of a 10,000-file repository, from the daemon's own
   nimbus_fetch_duration_seconds. Target: under 50 ms.

Needs a release build (`cargo build --release -p nimbus`), git, and the test bed's tools.
"""
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIMBUS = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "nimbus")
PUSHES = int(os.environ.get("PUSHES", "20"))
POLLED = int(os.environ.get("POLLED", "10"))
BED, TB = "92", "/tmp/nimbus-gitops-bed"
SECRET = "bench-hook-secret"
ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
           GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")


def run(*args, cwd=None, env=None):
    return subprocess.run(args, cwd=cwd, env=env or ENV, check=True, capture_output=True, text=True).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.load(r)


def wait_applied(port, commit, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        s = status(port)
        if s["revision_applied"] == commit:
            return
        if s["errors"]:
            raise SystemExit(f"not applied: {s['errors']}")
        time.sleep(0.01)
    raise SystemExit(f"{commit} not applied in {timeout} s: {status(port)}")


def hook(port):
    body = b'{"ref":"refs/heads/main"}'
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/git", data=body, method="POST",
                                 headers={"X-Hub-Signature-256": sig})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def daemon(repo_url, workdir, port, interval, env=None):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "secret"), "w") as f:
        f.write(SECRET)
    log = open(os.path.join(workdir, "log"), "w")
    p = subprocess.Popen([NIMBUS, "reconcile", "--repo", repo_url, "--branch", "main",
                          "--interval", interval, "--drift-interval", "1h",
                          "--listen", f"127.0.0.1:{port}", "--workdir", workdir,
                          "--webhook-secret-file", os.path.join(workdir, "secret")],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env or os.environ)
    wait_port(port)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()


def main():
    if not os.path.exists(NIMBUS):
        raise SystemExit(f"{NIMBUS}: build it first (cargo build --release -p nimbus)")
    work = tempfile.mkdtemp(prefix="nimbus-gitops-")
    procs = []
    try:
        hosts = json.loads(subprocess.run(
            ["bash", os.path.join(ROOT, "testbed/hosts-up.sh")], check=True, capture_output=True, text=True,
            env=dict(os.environ, N="3", BED=BED, TB=TB,
                     ROOTFS=os.environ.get("NIMBUS_TESTBED_CACHE", "/var/tmp/nimbus-testbed") + "/rootfs-systemd"),
        ) and open(os.path.join(TB, "hosts.json")).read())
        repos = os.path.join(work, "repos")
        os.makedirs(repos)
        run("git", "init", "-q", "--bare", "-b", "main", os.path.join(repos, "infra.git"))
        git_port = free_port()
        procs.append(subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                                       f"--port={git_port}", f"--base-path={repos}", repos],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(git_port)
        # The config repository: 3 hosts, one File on each.
        src = os.path.join(work, "src")
        os.makedirs(src)
        shutil.copy(os.path.join(TB, "known_hosts"), os.path.join(src, "known_hosts"))
        with open(os.path.join(src, "nimbus.yaml"), "w") as f:
            f.write("apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: gitops}\nspec:\n"
                    f"  ssh: {{user: root, identityFile: {TB}/keys/id_ed25519, knownHosts: known_hosts}}\n")
        with open(os.path.join(src, "hosts.yaml"), "w") as f:
            for h in hosts["hosts"]:
                f.write(f"---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: {h['name']}, labels: {{bench: \"yes\"}}}}\n"
                        f"spec: {{address: {h['address']}}}\n")

        def change(i):
            with open(os.path.join(src, "config.yaml"), "w") as f:
                f.write("apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: config}\n"
                        f"spec: {{hosts: {{bench: \"yes\"}}, path: /etc/bench/config, content: \"version {i}\\n\"}}\n")
            run("git", "add", "-A", cwd=src)
            run("git", "commit", "-q", "-m", f"version {i}", cwd=src)
            return run("git", "rev-parse", "HEAD", cwd=src)

        run("git", "init", "-q", "-b", "main", cwd=src)
        run("git", "remote", "add", "origin", os.path.join(repos, "infra.git"), cwd=src)
        first = change(0)
        run("git", "push", "-q", "origin", "main", cwd=src)
        url = f"git://127.0.0.1:{git_port}/infra.git"

        # 1. webhook
        port = free_port()
        d = daemon(url, os.path.join(work, "webhook"), port, "1h")
        procs.append(d)
        wait_applied(port, first)
        times = []
        for i in range(1, PUSHES + 1):
            commit = change(i)
            t0 = time.monotonic()
            run("git", "push", "-q", "origin", "main", cwd=src)
            hook(port)
            wait_applied(port, commit)
            times.append(time.monotonic() - t0)
        got = [open(os.path.join(h["upper"], "etc/bench/config")).read() for h in hosts["hosts"]]
        assert got == [f"version {PUSHES}\n"] * 3, got
        stop(d)
        print(f"push to applied, webhook, one File on 3 hosts over SSH, {PUSHES} pushes: "
              f"p50 {percentile(times, 50):.2f} s, p99 {percentile(times, 99):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s")

        # 2. polling every 5 s
        port = free_port()
        d = daemon(url, os.path.join(work, "webhook"), port, "5s")
        procs.append(d)
        wait_applied(port, run("git", "rev-parse", "HEAD", cwd=src))
        polled = []
        for i in range(PUSHES + 1, PUSHES + 1 + POLLED):
            commit = change(i)
            # A push comes at any moment of the poll cycle, not right after the last apply.
            time.sleep(random.uniform(0, 5))
            t0 = time.monotonic()
            run("git", "push", "-q", "origin", "main", cwd=src)
            wait_applied(port, commit)
            polled.append(time.monotonic() - t0)
        stop(d)
        print(f"push to applied, polling every 5 s, {POLLED} pushes: p50 {percentile(polled, 50):.2f} s, "
              f"max {max(polled):.2f} s (Argo CD's default poll is 180 s, Flux's 60 s)")

        # 3. no-change polls of a 10,000-file repository
        big = os.path.join(work, "big")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_repo.py"), big, "10000", "yaml"],
                       check=True, env=dict(os.environ, PER_FILE="1"), capture_output=True)
        files = sum(len(f) for _, _, f in os.walk(big))
        run("git", "init", "-q", "-b", "main", cwd=big)
        run("git", "add", "-A", cwd=big)
        run("git", "commit", "-q", "-m", "big", cwd=big)
        run("git", "clone", "-q", "--bare", big, os.path.join(repos, "big.git"))
        port = free_port()
        d = daemon(f"git://127.0.0.1:{git_port}/big.git", os.path.join(work, "big-daemon"), port, "250ms",
                   env=dict(os.environ, NIMBUS_MEMORY_PROVIDER=os.path.join(work, "big-daemon", "memory")))
        procs.append(d)
        wait_applied(port, run("git", "rev-parse", "HEAD", cwd=big), timeout=300)

        def fetch_stats():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            value = lambda name: float(next(l.split()[-1] for l in text.splitlines() if l.startswith(name + " ")))
            return value("nimbus_fetch_duration_seconds_sum"), value("nimbus_fetch_duration_seconds_count")

        s0, c0 = fetch_stats()
        time.sleep(10)
        s1, c1 = fetch_stats()
        stop(d)
        print(f"no-change poll (fetch over git:// plus diff) of a {files}-file repository: "
              f"{(s1 - s0) / (c1 - c0) * 1000:.1f} ms on average over {int(c1 - c0)} polls")
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)
        subprocess.run(["bash", os.path.join(ROOT, "testbed/hosts-down.sh")], env=dict(os.environ, BED=BED, TB=TB),
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
