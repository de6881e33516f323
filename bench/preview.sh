#!/usr/bin/env bash
# `nimbus preview` of a 10,000-resource repository (bench/gen_repo.py) with 10 changed files
# (issue 5's target: under 1 s). The repository is generated and committed once into
# ${NIMBUS_BENCH_DIR:-/tmp/nimbus-bench}/preview-$SIZE; the head commit changes one Workload's
# replicas in each of 10 files. Prints every run and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-10000}
RUNS=${RUNS:-5}
dir=${NIMBUS_BENCH_DIR:-/tmp/nimbus-bench}/preview-$SIZE
cargo build --release -q -p nimbus
nimbus=$(pwd)/${CARGO_TARGET_DIR:-target}/release/nimbus
if [ ! -d "$dir/.git" ]; then
  rm -rf "$dir"
  python3 bench/gen_repo.py "$dir" "$SIZE" yaml >/dev/null
  (
    cd "$dir"
    export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
    git init -q -b main . && git add -A && git commit -qm base
    git checkout -q -b change
    grep -rl 'replicas:' --include='*.yaml' . | sort | head -10 | while read -r f; do
      sed -i '0,/replicas: [0-9]*/s//replicas: 3/' "$f"
    done
    git commit -qam "10 files changed"
  )
fi
files=$(cd "$dir" && git diff --name-only main change | wc -l)
changes=$("$nimbus" preview --repo "$dir" --base main --head change --format json | python3 -c 'import json,sys; p=json.load(sys.stdin); print(sum(1 for c in p["changes"] if c["action"]!="no-op"))')
times=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(date +%s.%N)
  "$nimbus" preview --repo "$dir" --base main --head change >/dev/null
  t1=$(date +%s.%N)
  times+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
done
median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "preview of $SIZE resources, $files files changed ($changes changed instances): median ${median} s (runs: ${times[*]})"
