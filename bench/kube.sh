#!/usr/bin/env bash
# Kubernetes (issue 13), at the provider for now (the k3s Cluster is not wired into runs yet):
# 100 Workloads in 10 Tenants against the test API server on loopback: the first apply, then
# a no-change observe of all 110 instances, its time and API requests. Prints them.
#   bash bench/kube.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p nimbus-provider-kube --bench kube
