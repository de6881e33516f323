#!/usr/bin/env bash
# State backends (issue 26): apply of every instance and plans made from the state, with
# SQLite and with PostgreSQL in the same run (bench_engine with NIMBUS_BENCH_PG_URL), against
# a PostgreSQL cluster of its own (initdb in a temporary folder, on loopback, as the postgres
# user; Debian's postgresql, installed by scripts/setup.sh). Then five failovers of the
# reconcile daemon on the test bed (bench_failover: kill -9 of the leader to the standby's
# first applied change).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE:-10000}
bin_dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
tmp=$(mktemp -d)
chown postgres: "$tmp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop() { runuser -u postgres -- "$bin_dir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap stop EXIT
runuser -u postgres -- "$bin_dir/initdb" -D "$tmp/data" -A trust -U postgres >/dev/null
# Durable as a real server is (fsync on, synchronous commit). PG_OPTIONS adds server settings
# (PG_OPTIONS="-c synchronous_commit=off" shows what the commits' flushes cost).
runuser -u postgres -- "$bin_dir/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $tmp ${PG_OPTIONS:-}" start >/dev/null
cargo build --release -q -p nimbus --example bench_engine
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_engine
NIMBUS_BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" \
  "$bin" "$size" "${NIMBUS_BENCH_DIR:-/tmp/nimbus-bench}/yaml-$size"
if [ "${FAILOVER:-1}" = 1 ]; then
  echo
  cargo nextest run -p nimbus --run-ignored only --no-capture -E 'test(bench_failover)' 2>&1 \
    | grep -E '^failover'
fi
