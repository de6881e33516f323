#!/usr/bin/env bash
# The quick start: builds nimbus, scaffolds a repository with `nimbus init`, and validates it
# and examples-repo (YAML and its KDL twin). Later releases turn this into the full demo:
# test hosts up and a config repository reconciled onto them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p nimbus
nimbus=${CARGO_TARGET_DIR:-target}/release/nimbus
"$nimbus" --version
echo
echo "== nimbus validate examples-repo"
"$nimbus" validate examples-repo
echo
echo "== nimbus validate examples-repo/kdl (the same repository in KDL)"
"$nimbus" validate examples-repo/kdl
echo
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "== nimbus init $scratch/infra"
"$nimbus" init "$scratch/infra" | tail -4
"$nimbus" validate "$scratch/infra"
echo
echo "== a repository with mistakes: every problem, with its file, line and column"
"$nimbus" validate reconciler/tests/validate/many-mistakes 2>&1 | head -40 || true
echo "   ... (run '$nimbus validate reconciler/tests/validate/many-mistakes' for all of them)"
