#!/usr/bin/env bash
# The quick start: builds nimbus and reconciles examples-repo. Until the SSH provider lands
# (next release: test hosts with real sshd and systemd), the "infrastructure" is nimbus's
# in-memory provider, persisted in a scratch directory, so every step is real nimbus:
# validate, plan, apply, a hand edit detected as drift and corrected, and destroy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p nimbus
nimbus=$(pwd)/${CARGO_TARGET_DIR:-target}/release/nimbus
"$nimbus" --version

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r examples-repo "$scratch/repo"
export NIMBUS_MEMORY_PROVIDER="$scratch/infrastructure"
cd "$scratch/repo"

step() { printf '\n== %s\n' "$*"; }
step "nimbus validate (examples-repo, and its KDL twin)"
"$nimbus" validate .
"$nimbus" validate kdl
step "nimbus plan"
"$nimbus" plan . | tail -n 12
step "nimbus apply --auto-approve"
"$nimbus" apply --auto-approve . 2>/dev/null | tail -n 3
step "nimbus plan again: nothing to do"
"$nimbus" plan .
step "someone edits /etc/motd on web-2 by hand"
python3 - "$NIMBUS_MEMORY_PROVIDER/objects.json" <<'PY'
import json, sys
objects = json.load(open(sys.argv[1]))
objects["File/motd@web-2"]["content"] = "hacked\n"
json.dump(objects, open(sys.argv[1], "w"), indent=2)
PY
"$nimbus" plan .
step "nimbus apply corrects the drift"
"$nimbus" apply --auto-approve . 2>/dev/null | tail -n 2
step "nimbus state list | head; nimbus state history"
"$nimbus" state list | head -n 5
"$nimbus" state history
step "nimbus destroy --auto-approve (db-1 is protected and stays)"
"$nimbus" destroy --auto-approve . 2>/dev/null | tail -n 2
"$nimbus" state list
