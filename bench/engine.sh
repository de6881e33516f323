#!/usr/bin/env bash
# Engine figures (issue 3), against the in-memory provider: plan of 10,000 and 100,000
# converged resources, plan with one changed, apply of no-cost changes, peak memory.
# Repositories are generated once into ${NIMBUS_BENCH_DIR:-/tmp/nimbus-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p nimbus --example bench_engine
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_engine
dir=${NIMBUS_BENCH_DIR:-/tmp/nimbus-bench}
for size in ${SIZES:-10000 100000}; do
  "$bin" "$size" "$dir/yaml-$size"
  echo
done
