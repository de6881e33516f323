#!/usr/bin/env bash
# The scheduler at scale (issue 14): 10,000 workloads and VMs placed on 1,000 hosts, and a
# re-plan with every placement recorded (nothing may move). Prints medians.
#   bash bench/schedule.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p nimbus-planner --bench schedule
