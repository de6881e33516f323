#!/usr/bin/env python3
"""Modules against the same resources written out (issue 27): `nimbus validate` and the first
`nimbus plan` (in-memory provider, empty state) of 10,000 resources made by 100 uses of a
100-resource module, and of the same 10,000 resources written out, in one run, alternating.
Prints the median and minimum of each and the ratio modules / written out.

usage: bench/modules.py [--nimbus PATH] [--runs N] [--uses 100]
Builds the release binary first unless --nimbus is given. Repositories are generated into
$NIMBUS_BENCH_DIR (default /tmp/nimbus-bench)/modules-*.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
API = "apiVersion: nimbus.dev/v1alpha1"


def group(g, address):
    """Ten resources of one group: 2 Hosts, 3 Files, a Service, a Cluster, a Tenant, 2
    Workloads. `g` names them; `address` is the Hosts' address. Values inside `{ }` and `[ ]`
    are quoted: a module's `${{ }}` there must be."""
    return f"""{API}
kind: Host
metadata:
  name: h{g}-1
  labels: {{group: "g{g}", role: web}}
spec:
  address: {address}
  port: 22
  capacity: {{cpu: "4", memory: 8Gi}}
---
{API}
kind: Host
metadata:
  name: h{g}-2
  labels: {{group: "g{g}", role: db}}
spec:
  address: {address}
  port: 2222
---
{API}
kind: File
metadata:
  name: f{g}-1
spec:
  host: h{g}-1
  path: /etc/nimbus/{g}.conf
  mode: "0644"
  content: "group {g}\\n"
---
{API}
kind: File
metadata:
  name: f{g}-2
spec:
  hosts: {{group: "g{g}"}}
  path: /etc/motd
  content: "managed by nimbus, group {g}\\n"
---
{API}
kind: File
metadata:
  name: f{g}-3
spec:
  hosts: {{group: "g{g}", role: db}}
  path: /etc/db/{g}.ini
  mode: "0600"
  owner: postgres
  content: "[db]\\nport = 5432\\n"
---
{API}
kind: Service
metadata:
  name: s{g}
spec:
  hosts: {{group: "g{g}"}}
  restartOn: ["File/f{g}-2"]
  unit: |
    [Service]
    ExecStart=/usr/bin/sleep infinity
---
{API}
kind: Cluster
metadata:
  name: c{g}
spec:
  type: docker-swarm
  managers: {{group: "g{g}", role: web}}
  workers: {{group: "g{g}", role: db}}
---
{API}
kind: Tenant
metadata:
  name: t{g}
spec:
  cluster: c{g}
  quota: {{cpu: "4", memory: 8Gi, pods: 10}}
---
{API}
kind: Workload
metadata:
  name: api
spec:
  tenant: t{g}
  image: example/api:1.0
  replicas: 2
  cpu: 500m
  memory: 512Mi
  placement: {{group: "g{g}"}}
---
{API}
kind: Workload
metadata:
  name: worker
spec:
  tenant: t{g}
  image: example/worker:1.0
  replicas: 1
  cpu: "1"
  memory: 1Gi
  dependsOn: ["Workload/t{g}/api"]
"""


REPOSITORY = f"""{API}
kind: Repository
metadata:
  name: bench
spec:
  parallelism: 16
"""


def module_text():
    """The module: ten groups, named by the use's key, addressed by its number."""
    return [
        group("${{ module.key }}x%d" % i, "10.${{ inputs.n }}.%d.1" % i) for i in range(10)
    ]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def generate(base, uses):
    written, moduled = os.path.join(base, "modules-written"), os.path.join(base, "modules-used")
    for repo in (written, moduled):
        shutil.rmtree(repo, ignore_errors=True)
        write(os.path.join(repo, "nimbus.yaml"), REPOSITORY)
    template = module_text()
    write(
        os.path.join(moduled, "modules/block/module.yaml"),
        f"{API}\nkind: Module\nspec:\n  inputs:\n    n: {{type: integer, min: 0, max: 255}}\n",
    )
    for i, text in enumerate(template):
        write(os.path.join(moduled, f"modules/block/group-{i}.yaml"), text)
    for n in range(uses):
        key = f"u{n}"
        write(
            os.path.join(moduled, f"uses/{n // 10}/use-{n}.yaml"),
            f"{API}\nkind: Use\nmetadata:\n  name: {key}\nspec:\n  module: modules/block\n  values:\n    n: {n}\n",
        )
        for i, text in enumerate(template):
            out = text.replace("${{ module.key }}", key).replace("${{ inputs.n }}", str(n))
            write(os.path.join(written, f"blocks/{n // 10}/{key}-group-{i}.yaml"), out)
    return written, moduled


def run_once(nimbus, args, env=None):
    start = time.perf_counter()
    proc = subprocess.run([nimbus, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        sys.exit(f"nimbus {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nimbus")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--uses", type=int, default=100)
    args = parser.parse_args()
    nimbus = args.nimbus
    if not nimbus:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "nimbus"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        nimbus = os.path.join(target, "release", "nimbus")
    base = os.environ.get("NIMBUS_BENCH_DIR", "/tmp/nimbus-bench")
    written, moduled = generate(base, args.uses)
    times = {}
    for command in ("validate", "plan"):
        for name, repo in (("written out", written), ("modules", moduled)):
            times[(command, name)] = []
        for _ in range(args.runs):
            for name, repo in (("written out", written), ("modules", moduled)):
                env = dict(os.environ)
                if command == "plan":
                    # An empty in-memory state each run: every instance is planned as a create.
                    memory = tempfile.mkdtemp(prefix="nimbus-bench-memory-")
                    env["NIMBUS_MEMORY_PROVIDER"] = memory
                    cmd = ["plan", "--no-color", repo]
                else:
                    cmd = ["validate", repo]
                times[(command, name)].append(run_once(nimbus, cmd, env))
                if command == "plan":
                    shutil.rmtree(memory, ignore_errors=True)
    print(f"{args.uses} uses of a 100-resource module ({args.uses * 100} resources), {args.runs} runs each, alternating")
    print(f"{'command':<9} {'repository':<12} {'median':>9} {'min':>9}")
    for command in ("validate", "plan"):
        for name in ("written out", "modules"):
            t = times[(command, name)]
            print(f"{command:<9} {name:<12} {statistics.median(t) * 1000:8.0f}ms {min(t) * 1000:8.0f}ms")
        ratio = statistics.median(times[(command, "modules")]) / statistics.median(times[(command, "written out")])
        best = min(times[(command, "modules")]) / min(times[(command, "written out")])
        print(f"{command:<9} {'ratio':<12} {ratio:9.3f} {best:9.3f}   (modules / written out; goal <= 1.20)")


if __name__ == "__main__":
    main()
