#!/usr/bin/env python3
"""Issue 23's figures: what the tenant-boundary guards cost, in one run, before and after.

  sudo bash bench/security.sh      (builds both binaries, then runs this)
  sudo python3 bench/security.py --before OLD_NIMBUS --after NEW_NIMBUS

Three figures, each measured with both binaries alternately in the same run (REPEAT rounds,
default 5), median and minimum printed with the ratio after/before:
1. the idempotent `nimbus plan` of 10 SSH hosts (test-bed hosts; per host 5 Files and 1
   Service, applied once first);
2. `nimbus validate` of a generated repository of 10,000 resources (YAML);
3. webhook to applied: a one-File change on 3 of those hosts pushed to a git daemon on
   loopback, a signed webhook, until /status shows the commit applied (PUSHES per round,
   default 5).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gitops  # noqa: E402  (the webhook harness: daemon, hook, wait_applied)

BED, TB = "93", "/tmp/nimbus-security-bed"
REPEAT = int(os.environ.get("REPEAT", "5"))
PUSHES = int(os.environ.get("PUSHES", "5"))


def timed(args, cwd):
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return took


def row(name, before, after):
    mb, ma = statistics.median(before), statistics.median(after)
    print(f"| {name} | {mb * 1000:.0f} ms (min {min(before) * 1000:.0f}) | "
          f"{ma * 1000:.0f} ms (min {min(after) * 1000:.0f}) | {ma / mb:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    args = ap.parse_args()
    binaries = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    work = tempfile.mkdtemp(prefix="nimbus-security-")
    procs = []
    try:
        hosts = json.loads(subprocess.run(
            ["bash", os.path.join(ROOT, "testbed/hosts-up.sh")], check=True, capture_output=True, text=True,
            env=dict(os.environ, N="10", BED=BED, TB=TB,
                     ROOTFS=os.environ.get("NIMBUS_TESTBED_CACHE", "/var/tmp/nimbus-testbed") + "/rootfs-systemd"),
        ) and open(os.path.join(TB, "hosts.json")).read())
        # 1. The repository of 10 hosts, applied once.
        repo = os.path.join(work, "hosts")
        os.makedirs(repo)
        shutil.copy(os.path.join(TB, "known_hosts"), os.path.join(repo, "known_hosts"))
        with open(os.path.join(repo, "nimbus.yaml"), "w") as f:
            f.write("apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: security}\nspec:\n"
                    f"  parallelism: 64\n  ssh: {{user: root, identityFile: {TB}/keys/id_ed25519, knownHosts: known_hosts}}\n")
        with open(os.path.join(repo, "hosts.yaml"), "w") as f:
            for h in hosts["hosts"]:
                f.write(f"---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: {h['name']}, labels: {{bench: \"yes\"}}}}\n"
                        f"spec: {{address: {h['address']}}}\n")
        with open(os.path.join(repo, "files.yaml"), "w") as f:
            for i in range(1, 6):
                f.write(f"---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: file{i}}}\n"
                        f"spec: {{hosts: {{bench: \"yes\"}}, path: /srv/bench-security/file{i}.conf, mode: \"0644\", content: \"file {i}\\n\"}}\n")
        with open(os.path.join(repo, "service.yaml"), "w") as f:
            f.write("apiVersion: nimbus.dev/v1alpha1\nkind: Service\nmetadata: {name: bench-security}\nspec:\n"
                    "  hosts: {bench: \"yes\"}\n  unit: |\n    [Unit]\n    Description=bench\n    [Service]\n"
                    "    ExecStart=/bin/sleep infinity\n    [Install]\n    WantedBy=multi-user.target\n")
        timed([binaries["after"], "apply", "--auto-approve", "."], repo)
        plans = {"before": [], "after": []}
        for _ in range(REPEAT):
            for name, nimbus in binaries.items():
                plans[name].append(timed([nimbus, "plan", "--detailed-exitcode", "."], repo))
        # 2. validate of 10,000 resources.
        big = os.path.join(work, "big")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_repo.py"), big, "10000", "yaml"],
                       check=True, capture_output=True)
        validates = {"before": [], "after": []}
        for name, nimbus in binaries.items():
            timed([nimbus, "validate", big], ROOT)  # warm the page cache
        for _ in range(REPEAT):
            for name, nimbus in binaries.items():
                validates[name].append(timed([nimbus, "validate", big], ROOT))
        # 3. webhook to applied, on 3 of the hosts.
        repos = os.path.join(work, "repos")
        os.makedirs(repos)
        gitops.run("git", "init", "-q", "--bare", "-b", "main", os.path.join(repos, "infra.git"))
        git_port = gitops.free_port()
        procs.append(subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                                       f"--port={git_port}", f"--base-path={repos}", repos],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        gitops.wait_port(git_port)
        src = os.path.join(work, "src")
        os.makedirs(src)
        shutil.copy(os.path.join(TB, "known_hosts"), os.path.join(src, "known_hosts"))
        shutil.copy(os.path.join(repo, "nimbus.yaml"), os.path.join(src, "nimbus.yaml"))
        with open(os.path.join(src, "hosts.yaml"), "w") as f:
            for h in hosts["hosts"][:3]:
                f.write(f"---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: {h['name']}, labels: {{hook: \"yes\"}}}}\n"
                        f"spec: {{address: {h['address']}}}\n")
        counter = [0]

        def change():
            counter[0] += 1
            with open(os.path.join(src, "config.yaml"), "w") as f:
                f.write("apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: config}\n"
                        f"spec: {{hosts: {{hook: \"yes\"}}, path: /etc/bench/hook, content: \"version {counter[0]}\\n\"}}\n")
            gitops.run("git", "add", "-A", cwd=src)
            gitops.run("git", "commit", "-q", "-m", f"version {counter[0]}", cwd=src)
            return gitops.run("git", "rev-parse", "HEAD", cwd=src)

        gitops.run("git", "init", "-q", "-b", "main", cwd=src)
        gitops.run("git", "remote", "add", "origin", os.path.join(repos, "infra.git"), cwd=src)
        first = change()
        gitops.run("git", "push", "-q", "origin", "main", cwd=src)
        url = f"git://127.0.0.1:{git_port}/infra.git"
        hooks = {"before": [], "after": []}
        for round_ in range(2):
            for name, nimbus in binaries.items():
                gitops.NIMBUS = nimbus
                port = gitops.free_port()
                d = gitops.daemon(url, os.path.join(work, f"daemon-{name}"), port, "1h")
                procs.append(d)
                gitops.wait_applied(port, gitops.run("git", "rev-parse", "HEAD", cwd=src))
                for _ in range(PUSHES):
                    commit = change()
                    t0 = time.monotonic()
                    gitops.run("git", "push", "-q", "origin", "main", cwd=src)
                    gitops.hook(port)
                    gitops.wait_applied(port, commit)
                    hooks[name].append(time.monotonic() - t0)
                gitops.stop(d)
        del first
        print(f"nimbus before: {binaries['before']}\nnimbus after:  {binaries['after']}")
        print(f"{REPEAT} rounds, each binary in turn\n")
        print("| figure | before | after | after/before |")
        print("|---|---|---|---|")
        row("idempotent plan, 10 SSH hosts (5 Files + 1 Service each)", plans["before"], plans["after"])
        row("validate, 10,000 resources (YAML)", validates["before"], validates["after"])
        row(f"webhook to applied, 1 File on 3 hosts ({2 * PUSHES} pushes each)", hooks["before"], hooks["after"])
    finally:
        for p in procs:
            if p.poll() is None:
                gitops.stop(p)
        subprocess.run(["bash", os.path.join(ROOT, "testbed/hosts-down.sh")], env=dict(os.environ, BED=BED, TB=TB),
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
