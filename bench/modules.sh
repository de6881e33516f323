#!/usr/bin/env bash
# Issue 27: validate and plan of 10,000 resources made by modules against the same written out.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/modules.py "$@"
