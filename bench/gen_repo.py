#!/usr/bin/env python3
"""Generates a valid config repository of N resources in YAML or KDL, for benchmarks.

Every group of 10 resources is: 2 Hosts, 3 Files (by host name, by selector, inline),
1 Service (selector, restartOn), 1 Cluster, 1 Tenant with a quota, 2 Workloads of that
tenant. Files hold 100 documents each, in folders of 100 files.

usage: gen_repo.py DIR COUNT yaml|kdl      (PER_FILE=N documents per file, default 100)
"""
import os
import sys


def group_yaml(g):
    return [
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Host
metadata:
  name: h{g}-1
  labels: {{group: g{g}, role: web}}
spec:
  address: 10.{g // 65536 % 256}.{g // 256 % 256}.{g % 256}
  port: 22
  capacity: {{cpu: "4", memory: 8Gi}}
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Host
metadata:
  name: h{g}-2
  labels: {{group: g{g}, role: db}}
spec:
  address: 10.{g // 65536 % 256}.{g // 256 % 256}.{g % 256}
  port: 2222
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: File
metadata:
  name: f{g}-1
spec:
  host: h{g}-1
  path: /etc/nimbus/{g}.conf
  mode: "0644"
  content: "group {g}\\n"
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: File
metadata:
  name: f{g}-2
spec:
  hosts: {{group: g{g}}}
  path: /etc/motd
  content: |
    managed by nimbus, group {g}
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: File
metadata:
  name: f{g}-3
spec:
  hosts: {{group: g{g}, role: db}}
  path: /etc/db/{g}.ini
  mode: "0600"
  owner: postgres
  content: "[db]\\nport = 5432\\n"
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Service
metadata:
  name: s{g}
spec:
  hosts: {{group: g{g}}}
  restartOn: [File/f{g}-2]
  unit: |
    [Service]
    ExecStart=/usr/bin/sleep infinity
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Cluster
metadata:
  name: c{g}
spec:
  type: docker-swarm
  managers: {{group: g{g}, role: web}}
  workers: {{group: g{g}, role: db}}
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Tenant
metadata:
  name: t{g}
spec:
  cluster: c{g}
  quota: {{cpu: "4", memory: 8Gi, pods: 10}}
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Workload
metadata:
  name: api
spec:
  tenant: t{g}
  image: example/api:1.0
  replicas: 2
  cpu: 500m
  memory: 512Mi
  ports: ["8080:80/tcp"]
  env: {{GROUP: "{g}"}}
  placement: {{group: g{g}}}
""",
        f"""apiVersion: nimbus.dev/v1alpha1
kind: Workload
metadata:
  name: worker
spec:
  tenant: t{g}
  image: example/worker:1.0
  replicas: 1
  cpu: "1"
  memory: 1Gi
  dependsOn: [Workload/t{g}/api]
""",
    ]


def group_kdl(g):
    return [
        f"""host h{g}-1 {{
    labels group=g{g} role=web
    address "10.{g // 65536 % 256}.{g // 256 % 256}.{g % 256}"
    port 22
    capacity cpu="4" memory="8Gi"
}}
""",
        f"""host h{g}-2 {{
    labels group=g{g} role=db
    address "10.{g // 65536 % 256}.{g // 256 % 256}.{g % 256}"
    port 2222
}}
""",
        f"""file f{g}-1 {{
    host h{g}-1
    path "/etc/nimbus/{g}.conf"
    mode "0644"
    content "group {g}\\n"
}}
""",
        f"""file f{g}-2 {{
    hosts group=g{g}
    path "/etc/motd"
    content "managed by nimbus, group {g}\\n"
}}
""",
        f"""file f{g}-3 {{
    hosts group=g{g} role=db
    path "/etc/db/{g}.ini"
    mode "0600"
    owner postgres
    content "[db]\\nport = 5432\\n"
}}
""",
        f"""service s{g} {{
    hosts group=g{g}
    restart-on "File/f{g}-2"
    unit "[Service]\\nExecStart=/usr/bin/sleep infinity\\n"
}}
""",
        f"""cluster c{g} {{
    type docker-swarm
    managers group=g{g} role=web
    workers group=g{g} role=db
}}
""",
        f"""tenant t{g} {{
    cluster c{g}
    quota cpu="4" memory="8Gi" pods=10
}}
""",
        f"""workload api {{
    tenant t{g}
    image "example/api:1.0"
    replicas 2
    cpu "500m"
    memory "512Mi"
    ports "8080:80/tcp"
    env GROUP="{g}"
    placement group=g{g}
}}
""",
        f"""workload worker {{
    tenant t{g}
    image "example/worker:1.0"
    replicas 1
    cpu "1"
    memory "1Gi"
    depends-on "Workload/t{g}/api"
}}
""",
    ]


def main():
    root, count, syntax = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(root, exist_ok=True)
    per_file = int(os.environ.get("PER_FILE", "100"))
    documents = []
    for g in range(count // 10):
        documents.extend(group_yaml(g) if syntax == "yaml" else group_kdl(g))
    with open(os.path.join(root, "nimbus.yaml" if syntax == "yaml" else "nimbus.kdl"), "w") as f:
        if syntax == "yaml":
            f.write("apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: bench}\nspec: {parallelism: 10}\n")
        else:
            f.write("repository bench {\n    parallelism 10\n}\n")
    for n, start in enumerate(range(0, len(documents), per_file)):
        folder = os.path.join(root, f"part-{n // 100:03}")
        os.makedirs(folder, exist_ok=True)
        chunk = documents[start:start + per_file]
        with open(os.path.join(folder, f"resources-{n:05}.{syntax}"), "w") as f:
            f.write(("---\n" if syntax == "yaml" else "\n").join(chunk))


if __name__ == "__main__":
    main()
