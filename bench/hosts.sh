#!/usr/bin/env bash
# Hosts over SSH (issue 4): nimbus against Ansible (ansible-core, pipelining on, forks = number
# of hosts, SSH ControlPersist) and pyinfra, on the same test hosts, doing the same work, in
# one run. Per host: 1 directory, 5 files in it and 1 systemd service (unit file, enabled,
# running). For each tool: a first apply on hosts that have none of it, then idempotent
# re-applies (median of REPEAT runs). Sizes: SIZES="10 30" hosts. Prints a table and ratios.
#
#   bash bench/hosts.sh                 # needs root (the test bed); installs the peers in a venv
#
# The hosts are testbed/ containers (systemd-nspawn, real systemd and sshd, own netns); each
# tool writes its own paths and unit (bench-nimbus, bench-ansible, bench-pyinfra), so that no
# tool finds another's work done. nimbus has no directory resource: its directory is the files'
# parent, created by the first file written into it (mkdir -p), with the default mode.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
SIZES=${SIZES:-10 30}
REPEAT=${REPEAT:-3}
BED=${BED:-90}
TB=${TB:-/tmp/nimbus-bench-bed}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
venv=${NIMBUS_BENCH_VENV:-/var/tmp/nimbus-bench-venv}
work=$(mktemp -d)
export TB BED

cleanup() {
  bash "$here/testbed/hosts-down.sh" >/dev/null 2>&1 || true
  for s in "$work"/cp/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit dummy 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/setup.sh >/dev/null
cargo build --release -q -p nimbus
nimbus=$here/${CARGO_TARGET_DIR:-target}/release/nimbus
if ! [ -x "$venv/bin/ansible-playbook" ] || ! [ -x "$venv/bin/pyinfra" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core pyinfra
fi
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh >/dev/null

UNIT='[Unit]
Description=benchmark service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target'
file_text() { printf 'file %s of the benchmark\nmanaged by %s\n' "$1" "$2"; }

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ---- the three tools' inputs -------------------------------------------------------------
write_inputs() {    # $1 = number of hosts; reads $TB/hosts.json
  local n=$1 r=$work/nimbus
  rm -rf "$r"; mkdir -p "$r/.bed"
  cp "$TB/keys/id_ed25519" "$TB/known_hosts" "$r/.bed/"
  cat >"$r/nimbus.yaml" <<EOF
apiVersion: nimbus.dev/v1alpha1
kind: Repository
metadata: {name: bench}
spec:
  parallelism: 64
  ssh: {user: root, identityFile: .bed/id_ed25519, knownHosts: .bed/known_hosts}
EOF
  for k in $(seq 1 "$n"); do
    printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {bench: "yes"}}\nspec: {address: 10.233.%s.%s}\n' "$k" "$BED" "$((10+k))"
  done >"$r/hosts.yaml"
  for i in 1 2 3 4 5; do
    printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: file%s}\nspec:\n  hosts: {bench: "yes"}\n  path: /srv/bench-nimbus/file%s.conf\n  mode: "0644"\n  content: |\n' "$i" "$i"
    file_text "$i" nimbus | sed 's/^/    /'
  done >"$r/files.yaml"
  { printf 'apiVersion: nimbus.dev/v1alpha1\nkind: Service\nmetadata: {name: bench-nimbus}\nspec:\n  hosts: {bench: "yes"}\n  dependsOn: [File/file1]\n  unit: |\n'
    echo "$UNIT" | sed 's/^/    /'; } >"$r/service.yaml"

  local a=$work/ansible
  rm -rf "$a"; mkdir -p "$a" "$work/cp"
  cat >"$a/ansible.cfg" <<EOF
[defaults]
inventory = $TB/inventory.ini
forks = $n
host_key_checking = True
[ssh_connection]
pipelining = True
control_path_dir = $work/cp
ssh_args = -o ControlMaster=auto -o ControlPersist=120s
EOF
  {
    echo "- hosts: all"
    echo "  gather_facts: false"
    echo "  tasks:"
    echo "    - ansible.builtin.file: {path: /srv/bench-ansible, state: directory, mode: \"0755\"}"
    for i in 1 2 3 4 5; do
      echo "    - ansible.builtin.copy:"
      echo "        dest: /srv/bench-ansible/file$i.conf"
      echo "        mode: \"0644\""
      echo "        content: |"
      file_text "$i" ansible | sed 's/^/          /'
    done
    echo "    - ansible.builtin.copy:"
    echo "        dest: /etc/systemd/system/bench-ansible.service"
    echo "        mode: \"0644\""
    echo "        content: |"
    echo "$UNIT" | sed 's/^/          /'
    echo "      register: unit"
    echo "    - ansible.builtin.systemd_service: {name: bench-ansible, state: started, enabled: true, daemon_reload: \"{{ unit.changed }}\"}"
  } >"$a/site.yml"

  local p=$work/pyinfra
  rm -rf "$p"; mkdir -p "$p"
  {
    echo "hosts = ["
    for k in $(seq 1 "$n"); do
      echo "  ('h$k', {'ssh_hostname': '10.233.$BED.$((10+k))', 'ssh_user': 'root', 'ssh_key': '$TB/keys/id_ed25519', 'ssh_known_hosts_file': '$TB/known_hosts', 'ssh_strict_host_key_checking': 'yes'}),"
    done
    echo "]"
  } >"$p/inventory.py"
  {
    echo "from io import StringIO"
    echo "from pyinfra.operations import files, systemd"
    echo "files.directory(name='directory', path='/srv/bench-pyinfra', present=True, mode='755')"
    for i in 1 2 3 4 5; do
      echo "files.put(name='file$i', src=StringIO($(file_text "$i" pyinfra | python3 -c 'import sys; print(repr(sys.stdin.read()))')), dest='/srv/bench-pyinfra/file$i.conf', mode='644')"
    done
    echo "unit = files.put(name='unit', src=StringIO($(echo "$UNIT" | python3 -c 'import sys; print(repr(sys.stdin.read()))')), dest='/etc/systemd/system/bench-pyinfra.service', mode='644')"
    echo "systemd.daemon_reload(name='daemon-reload', _if=unit.did_change)"
    echo "systemd.service(name='service', service='bench-pyinfra', running=True, enabled=True)"
  } >"$p/deploy.py"
}

run_nimbus() { (cd "$work/nimbus" && "$nimbus" apply --auto-approve . >"$work/nimbus.log" 2>&1); }
run_ansible() { ANSIBLE_CONFIG=$work/ansible/ansible.cfg "$venv/bin/ansible-playbook" "$work/ansible/site.yml" >"$work/ansible.log" 2>&1; }
run_pyinfra() { (cd "$work/pyinfra" && "$venv/bin/pyinfra" -y inventory.py deploy.py >"$work/pyinfra.log" 2>&1); }

# Every host has the tool's 5 files and its service enabled and running.
check() {   # $1 = tool, $2 = hosts
  local bad=0 k
  for k in $(seq 1 "$2"); do
    out=$(ssh -F "$TB/ssh_config" "h$k" "ls /srv/bench-$1 | wc -l; systemctl is-active bench-$1; systemctl is-enabled bench-$1" 2>&1 | tr '\n' ' ')
    [ "$out" = "5 active enabled " ] || { echo "  $1 on h$k: $out" >&2; bad=1; }
  done
  return $bad
}

declare -A T
for n in $SIZES; do
  echo "== $n hosts (bring-up: testbed/hosts-up.sh)"
  N=$n ROOTFS="$cache/rootfs-systemd" bash testbed/hosts-up.sh | tail -1
  write_inputs "$n"
  for tool in nimbus ansible pyinfra; do
    t0=$(now); if ! "run_$tool"; then tail -30 "$work/$tool.log" >&2; echo "$tool: first run failed" >&2; exit 1; fi; t1=$(now)
    T[$n,$tool,first]=$(python3 -c "print(f'{$t1-$t0:.3f}')")
    check "$tool" "$n" || { echo "$tool did not do the work" >&2; exit 1; }
    runs=()
    for _ in $(seq 1 "$REPEAT"); do
      t0=$(now); "run_$tool" || { tail -30 "$work/$tool.log" >&2; exit 1; }; t1=$(now)
      runs+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
    done
    T[$n,$tool,again]=$(printf '%s\n' "${runs[@]}" | median)
    echo "  $tool: first apply ${T[$n,$tool,first]} s, idempotent re-apply ${T[$n,$tool,again]} s (runs: ${runs[*]})"
  done
  # the idempotent runs changed nothing
  grep -q "No changes" "$work/nimbus.log" || grep -q "0 to add, 0 to change" "$work/nimbus.log" || { echo "nimbus re-apply was not a no-op:" >&2; cat "$work/nimbus.log" >&2; exit 1; }
  grep -qE "changed=0 " "$work/ansible.log" || { echo "ansible re-apply changed something" >&2; tail -15 "$work/ansible.log" >&2; }
  bash testbed/hosts-down.sh >/dev/null
done

echo
printf '%-6s %-26s %9s %9s %9s %13s %13s\n' hosts run nimbus ansible pyinfra "ansible/nimbus" "pyinfra/nimbus"
for n in $SIZES; do
  for run in first again; do
    label=$([ "$run" = first ] && echo "first apply" || echo "idempotent re-apply (median)")
    a=${T[$n,ansible,$run]} p=${T[$n,pyinfra,$run]} m=${T[$n,nimbus,$run]}
    printf '%-6s %-26s %8ss %8ss %8ss %12sx %12sx\n' "$n" "$label" "$m" "$a" "$p" \
      "$(python3 -c "print(f'{$a/$m:.1f}')")" "$(python3 -c "print(f'{$p/$m:.1f}')")"
  done
done
