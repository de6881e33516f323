#!/usr/bin/env python3
"""Issue 24's figure: applying N instances through a provider plugin whose applies take a
while (the test plugin, tests/plugins/kv_plugin.py, with `delay` seconds each), when the plugin
declares `concurrency` in `describe` (requests matched by id) against one at a time, in the
same run, alternately. Prints the median wall time of each and the ratio."""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HEADER = "apiVersion: nimbus.dev/v1alpha1\n"
PLUGIN = os.path.join(os.path.dirname(__file__), "..", "reconciler", "tests", "plugins", "kv_plugin.py")


def repo(root, store, instances, delay, concurrency):
    os.makedirs(os.path.join(root, "plugins"), exist_ok=True)
    os.makedirs(os.path.join(root, "tenants", "acme"), exist_ok=True)
    shutil.copy(PLUGIN, os.path.join(root, "plugins", "kv_plugin.py"))
    # `concurrency: 1` declares one request at a time: the same plugin, the same delay.
    declared = f", concurrency: {concurrency}"
    with open(os.path.join(root, "nimbus.yaml"), "w") as f:
        f.write(HEADER + "kind: Repository\nmetadata: {name: bench}\nspec:\n  parallelism: 16\n  providers:\n"
                f"  - {{name: kv, command: [python3, plugins/kv_plugin.py], kinds: [Cluster, Tenant], settings: {{store: {store}-kv}}}}\n"
                f"  - {{name: vol, command: [python3, plugins/kv_plugin.py], kinds: [Volume], settings: {{store: {store}, delay: {delay}{declared}}}}}\n")
    with open(os.path.join(root, "cluster.yaml"), "w") as f:
        f.write(HEADER + "kind: Cluster\nmetadata: {name: prod}\nspec: {type: docker-swarm, managers: {role: manager}}\n---\n"
                + HEADER + "kind: Tenant\nmetadata: {name: acme}\nspec: {cluster: prod}\n")
    for i in range(instances):
        with open(os.path.join(root, "tenants", "acme", f"v{i}.yaml"), "w") as f:
            f.write(HEADER + f"kind: Volume\nmetadata: {{name: v{i}}}\nspec: {{type: btrfs, size: 1Gi}}\n")


def once(nimbus, instances, delay, concurrency):
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "repo")
        repo(root, os.path.join(work, "store"), instances, delay, concurrency)
        started = time.monotonic()
        done = subprocess.run([nimbus, "apply", "--auto-approve", "."], cwd=root,
                              capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        took = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"apply failed:\n{done.stdout}\n{done.stderr}")
        return took


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nimbus", required=True)
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    one, many = [], []
    for _ in range(args.rounds):
        one.append(once(args.nimbus, args.instances, args.delay, 1))
        many.append(once(args.nimbus, args.instances, args.delay, args.concurrency))
    a, b = statistics.median(one), statistics.median(many)
    print(f"apply of {args.instances} plugin instances, {args.delay * 1000:.0f} ms each, "
          f"median of {args.rounds} rounds:")
    print(f"  one request at a time:          {a:6.2f} s")
    print(f"  concurrency {args.concurrency} (by id):           {b:6.2f} s")
    print(f"  ratio (one at a time / concurrent): {a / b:.2f}")


if __name__ == "__main__":
    main()
