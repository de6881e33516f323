#!/usr/bin/env bash
# Kubernetes (issue 13): 100 Workloads in 10 Tenants.
#  1. At the provider, against the test API server in the same process: the first apply, a
#     no-change observe of all 110 instances, its time and API requests.
#  2. Through nimbus on three test-bed hosts (root; testbed/): k3s (the stand-in of
#     testbed/k3s/k3s) installed by `nimbus apply`, then a no-change `nimbus plan`: its time
#     and the API requests it makes.
#   bash bench/kube.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p nimbus-provider-kube --bench kube
bash scripts/setup.sh >/dev/null
cargo bench -q -p nimbus --bench k3s_plan
