#!/usr/bin/env bash
# Issue 24's figure (bench/plugin.py): N instances applied through a provider plugin whose
# applies take DELAY each, with the plugin declaring `concurrency` against one request at a
# time, alternately in one run.
#
#   bash bench/plugin.sh            INSTANCES=32 DELAY=0.1 CONCURRENCY=8 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build --release -q -p nimbus
python3 bench/plugin.py --nimbus "$target/release/nimbus" \
  --instances "${INSTANCES:-32}" --delay "${DELAY:-0.1}" \
  --concurrency "${CONCURRENCY:-8}" --rounds "${ROUNDS:-3}"
