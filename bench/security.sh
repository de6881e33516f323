#!/usr/bin/env bash
# Issue 23's figures (bench/security.py): the idempotent plan of 10 SSH hosts, validate of
# 10,000 resources and webhook to applied, with the nimbus of BEFORE (default: the last commit
# before the tenant-boundary work) and of the working tree, alternately in one run.
#
#   sudo bash bench/security.sh            BEFORE=<rev> to compare with another commit
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
BEFORE=${BEFORE:-29ce7b5}
target=${CARGO_TARGET_DIR:-$here/target}
work=$(mktemp -d)
cleanup() { git worktree remove --force "$work/before" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
bash scripts/setup.sh >/dev/null
cargo build --release -q -p nimbus
cp "$target/release/nimbus" "$work/nimbus-after"
git worktree add -q --detach "$work/before" "$BEFORE"
# A target directory of its own: two checkouts of the same workspace must not share one.
(cd "$work/before" && CARGO_TARGET_DIR=$target/bench-before cargo build --release -q -p nimbus)
cp "$target/bench-before/release/nimbus" "$work/nimbus-before"
python3 bench/security.py --before "$work/nimbus-before" --after "$work/nimbus-after"
