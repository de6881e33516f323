# Sourced by the benchmarks that run on the test bed (bench/docker.sh, mesh.sh, vm.sh, discover.sh), after
# they set TB and BED: a scratch folder ($work) removed at exit with the bed, what building and
# testing need (scripts/setup.sh), the release binary ($nimbus), and timing helpers.
export TB BED
here=$(pwd)
work=$(mktemp -d)
cleanup() {
  bash "$here/testbed/hosts-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/setup.sh >/dev/null
cargo build --release -q -p nimbus
nimbus=$here/${CARGO_TARGET_DIR:-target}/release/nimbus

now() { date +%s.%N; }
# Seconds from $2 to $1, to the millisecond.
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# A command on a bed host.
S() { ssh -F "$TB/ssh_config" "$@"; }
# A config repository in $1 named $2 that logs in to the bed's hosts with its key (copied into
# $1/.bed), at most $3 changes at once when given.
bed_repo() {
  mkdir -p "$1/.bed"
  cp "$TB/keys/id_ed25519" "$TB/known_hosts" "$1/.bed/"
  {
    printf 'apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: %s}\nspec:\n' "$2"
    [ -z "${3:-}" ] || printf '  parallelism: %s\n' "$3"
    printf '  ssh: {user: root, identityFile: .bed/id_ed25519, knownHosts: .bed/known_hosts}\n'
  } >"$1/nimbus.yaml"
}
