#!/usr/bin/env bash
# hosts-up.sh (adapted from shared/testbed/nspawn) — N realistic Debian 12 "hosts": systemd-nspawn containers booting real systemd
# (PID 1 = systemd, journald, dbus, logind, sshd), each in its own network namespace on a
# private bridge, each with a copy-on-write overlay of one pristine rootfs.
#
#   bash hosts-up.sh                       # N=3, TB=/tmp/nimbus-bed, BED=0
#   N=10 BED=1 TB=/tmp/nimbus-bed1 bash hosts-up.sh    # a second bed side by side
#
# Host hK: address 10.233.$BED.(10+K)/24 on eth0 (netns nsp$BED-hK, machine nsp$BED-hK),
#          hostname hK, sshd :22, root login by key only.
# Controller side: bridge nspbr$BED in the root netns, 10.233.$BED.1/24.
# Outputs in $TB:  keys/id_ed25519(.pub)   test client key (kept across beds)
#                  known_hosts             pinned host keys ("10.233.0.11,h1 ssh-ed25519 ...")
#                  ssh_config              ssh -F $TB/ssh_config h1 ...
#                  hosts.json              machine-readable list (name, address, port, user, host key, key path, ...)
#                  inventory.ini           Ansible inventory for the same hosts
#                  hosts/hK/upper/         everything hK wrote (overlay upper dir), readable from outside
#                  hosts/hK/console.log    the container's console (boot messages)
# Env: N (3), BED (0..99), TB, ROOTFS ($TB/rootfs-systemd, built by rootfs-systemd.sh if missing),
#      WAIT=system (default: also wait, over SSH, until systemd finished booting) | sshd (banner only),
#      BOOT_TIMEOUT=60 s, NET_SYSCTL_RW=1 (/proc/sys/net writable in the host; it is the host's own netns).
# Idempotent: tears down an existing bed with the same TB/BED first; on failure it stops what it
# started (keeping console logs). nspawn_pid/init_pid in hosts.json are those of the first boot
# (a reboot inside a host starts a new nspawn; supervisor_pid stays). Needs root.
set -euo pipefail
T0=${EPOCHREALTIME/./}
TB=${TB:-/tmp/nimbus-bed}
N=${N:-3}
BED=${BED:-0}
WAIT=${WAIT:-system}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-60}
ROOTFS=${ROOTFS:-$TB/rootfs-systemd}
HERE=$(cd "$(dirname "$0")" && pwd)
[[ $BED =~ ^[0-9]+$ && $BED -le 99 ]] || { echo "BED must be 0..99" >&2; exit 2; }
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 200 ]] || { echo "N must be 1..200" >&2; exit 2; }
NET=10.233.$BED          # this /24 exists only on our bridge and inside our netns
BR=nspbr$BED             # bridge in the root netns
NSP=nsp$BED-h            # netns + machine names: nsp0-h1 ...
VP=nsp${BED}h            # root-side veth names: nsp0h1 ...
CG=nimbus-nspawn/bed$BED # our own cgroup subtree per host (see boot.sh below)
ms() { echo $(( (${EPOCHREALTIME/./} - $1) / 1000 )); }
log() { echo "hosts-up: $*" >&2; }

# One claimant per bed number: tests, the demo and benchmarks run side by side on one machine,
# and hosts-down.sh tears down by number. The claim is a directory made atomically, holding
# the TB that owns it; a claim whose TB has no bed any more is stale and taken over. Another
# live claimant is waited for (BED_LOCK_WAIT seconds, default 300), then refused.
LOCKS=/run/nimbus-testbed; mkdir -p "$LOCKS"
claim=$LOCKS/bed$BED
waited=0
until mkdir "$claim" 2>/dev/null; do
  owner=$(cat "$claim/tb" 2>/dev/null || true)
  if [ "$owner" = "$TB" ]; then break; fi                           # our own bed: up again
  if [ -z "$owner" ] || [ ! -d "$owner/hosts" ]; then                # stale: its bed is gone
    if [ -n "$owner" ] || [ "$(( $(date +%s) - $(stat -c %Y "$claim" 2>/dev/null || echo 0) ))" -gt 10 ]; then
      rm -rf "$claim"; continue
    fi
  fi
  if [ "$waited" -ge "${BED_LOCK_WAIT:-300}" ]; then
    log "bed $BED is held by $owner (see $claim); refusing after ${waited}s: pick another BED, or wait"; exit 75
  fi
  [ "$waited" -eq 0 ] && log "bed $BED is held by $owner; waiting for it (BED_LOCK_WAIT=${BED_LOCK_WAIT:-300}s)"
  sleep 1; waited=$((waited + 1))
done
echo "$TB" > "$claim/tb.tmp" && mv "$claim/tb.tmp" "$claim/tb"

command -v systemd-nspawn >/dev/null || bash "$HERE/setup.sh" >&2
[ -x "$ROOTFS/lib/systemd/systemd" ] || TB=$TB bash "$HERE/rootfs-systemd.sh" >&2
[ -x "$ROOTFS/usr/sbin/sshd" ] || { log "$ROOTFS has no sshd"; exit 1; }

TB=$TB BED=$BED KEEP_CLAIM=1 bash "$HERE/hosts-down.sh" >/dev/null 2>&1 || true

# refuse if this bed's /24 is in use by anything else on this machine (routes or addresses)
if ip -o route show table all 2>/dev/null | grep -v '^unreachable 10.233.0.0/16' | grep -qE "(^|[^0-9])10\.233\.$BED\.[0-9]+"; then
  log "10.233.$BED.0/24 is already in use on this machine:"; ip -o route show table all | grep -E "10\.233\.$BED\." >&2; exit 1
fi

# from here on, a failure stops whatever was started (KEEP=1: console logs + upper dirs stay for reading)
on_exit() {
  local rc=$?; [ $rc -eq 0 ] && return 0
  log "failed (rc=$rc); stopping the partial bed, logs kept in $TB/hosts/hK/console.log"
  TB=$TB BED=$BED KEEP=1 bash "$HERE/hosts-down.sh" >&2 || true
}
trap on_exit EXIT

mkdir -p "$TB/keys" "$TB/hosts"; rm -f "$TB/known_hosts.new"
[ -f "$TB/keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C nimbus-test -f "$TB/keys/id_ed25519"
KEY=$TB/keys/id_ed25519

# ---- the "switch": a bridge in the root netns. Nothing can leave the machine:
#  * the netns have no default route (only 10.233.$BED.0/24 on eth0);
#  * packets arriving on the bridge are never routed: per-device forwarding=0 (holds even if
#    someone turns on ip_forward later), and no IPv6 on the bridge or its ports;
#  * a lowest-priority "unreachable 10.233.0.0/16" keeps root-ns traffic for any bed/overlay
#    address off the default gateway, even when a bed's bridge is missing.
ip route replace unreachable 10.233.0.0/16 metric 65535
# Each container's systemd takes several inotify instances (all containers run as root on the
# one kernel): Debian's default of 128 stops the twentieth or so at boot ("Too many open
# files"). Raise the limits for the machine, never lower them.
want=$(( 64 + 16 * N )); [ "$want" -lt 1024 ] && want=1024
[ "$(cat /proc/sys/fs/inotify/max_user_instances)" -ge "$want" ] || sysctl -qw fs.inotify.max_user_instances="$want"
[ "$(cat /proc/sys/fs/inotify/max_user_watches)" -ge 524288 ] || sysctl -qw fs.inotify.max_user_watches=524288
ip link add "$BR" type bridge
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1" "net.ipv4.conf.$BR.forwarding=0"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
# Hosts talk to each other across the bridge (a bastion to its hosts, WireGuard peers). With a
# Docker engine on the machine, br_netfilter sends bridged frames through iptables' FORWARD
# chain, whose policy the engine sets to DROP: accept this bridge's own traffic, and only it.
if command -v iptables >/dev/null && [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ]; then
  iptables -C FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 -i "$BR" -o "$BR" -j ACCEPT
fi

BED_HOSTS="$NET.1 controller"$'\n'
for k in $(seq 1 "$N"); do BED_HOSTS+="$NET.$((10+k)) h$k"$'\n'; done

# cgroup hierarchies we put each nspawn into. Without this, every nspawn started from the root
# cgroup (no systemd on this machine, --keep-unit) uses the SAME /payload subtree, so the
# containers' systemds share service cgroups: stopping ssh.service on h2 would kill h1's sshd.
CGROOTS=()
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then CGROOTS=(/sys/fs/cgroup)
else
  for h in systemd unified; do [ -d /sys/fs/cgroup/$h ] && CGROOTS+=("/sys/fs/cgroup/$h"); done
  # DOCKER=1: a dockerd inside creates cgroups in every v1 controller hierarchy. Give each host
  # its own subtree there too, so its cgroup namespace root (what it sees and writes) is
  # /nimbus-nspawn/bedB/hK and not the machine's root (shared with the machine's own dockerd).
  if [ "${DOCKER:-0}" = 1 ]; then
    for c in /sys/fs/cgroup/*; do
      case $c in */systemd|*/unified) continue;; esac
      [ "$(stat -fc %T "$c")" = cgroupfs ] && [ ! -L "$c" ] && CGROOTS+=("$c")
    done
  fi
fi

T1=${EPOCHREALTIME/./}
for k in $(seq 1 "$N"); do
  h=h$k; ns=$NSP$k; ip4=$NET.$((10+k)); d=$TB/hosts/$h; U=$d/upper
  mkdir -p "$U"

  # --- network: netns + veth; the container gets the netns as it is (eth0 already configured)
  ip netns add "$ns"
  ip link add "$VP$k" type veth peer name eth0 netns "$ns"
  sysctl -qw "net.ipv6.conf.$VP$k.disable_ipv6=1"
  ip link set "$VP$k" master "$BR" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip4/24" dev eth0
  ip -n "$ns" link set eth0 up

  # DOCKER=1: /var/lib/docker on the machine's own file system (overlay2 cannot stack on the
  # container's overlayfs root), outside the upper dir
  DOCKER_ARGS=
  if [ "${DOCKER:-0}" = 1 ]; then mkdir -p "$d/docker"; DOCKER_ARGS="--bind=$d/docker:/var/lib/docker"
    # cpuset v1: a new cgroup starts with empty cpus/mems (no task can join): copy the parent's
    c=/sys/fs/cgroup/cpuset
    if [ -f $c/cpuset.cpus ]; then
      for part in ${CG//\// } $h; do
        mkdir -p "$c/$part"
        for f in cpus mems; do [ -n "$(cat "$c/$part/cpuset.$f")" ] || cat "$c/cpuset.$f" >"$c/$part/cpuset.$f"; done
        c=$c/$part
      done
    fi
  fi

  # --- per-host identity, written into the overlay's upper dir before boot
  install -d -m 755 "$U/etc" "$U/etc/ssh" "$U/etc/ssh/sshd_config.d"
  install -d -m 700 "$U/root" "$U/root/.ssh"
  echo "$h" >"$U/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n\n%s' "$h" "$BED_HOSTS" >"$U/etc/hosts"
  tr -d '-' </proc/sys/kernel/random/uuid >"$U/etc/machine-id"; chmod 444 "$U/etc/machine-id"
  printf '# nimbus test host: no DNS (no route off the test bed); names come from /etc/hosts\nnameserver 127.0.0.1\n' >"$U/etc/resolv.conf"
  ssh-keygen -q -t ed25519 -N '' -C "root@$h" -f "$U/etc/ssh/ssh_host_ed25519_key"
  # same policy as the rootfs drop-in (so any rootfs works), plus: only the key we generated
  cat >"$U/etc/ssh/sshd_config.d/10-nimbus-test.conf" <<CONF
# nimbus test host $h: root by key only, no passwords, no reverse DNS, one pinned host key
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
CONF
  install -m 600 "$KEY.pub" "$U/root/.ssh/authorized_keys"

  # --- boot. boot.sh is the host's supervisor: it moves itself into the host's own cgroup and
  # runs nspawn, again when the container reboots (nspawn exits with 133 on `systemctl reboot`;
  # systemd-nspawn@.service does the same with RestartForceExitStatus=133).
  #  -D + --overlay=ROOTFS:UPPER:/  one shared read-only lower layer, writes go to UPPER
  #  --register=no --keep-unit      there is no systemd/machined on this machine
  #  --network-namespace-path       our netns (nspawn does no network setup of its own)
  #  --capability=CAP_NET_ADMIN     ip link/route/tuntap, wireguard-go (/dev/net/tun is in nspawn's /dev)
  #  SYSTEMD_NSPAWN_API_VFS_WRITABLE=network  /proc/sys/net writable (the host's own netns only;
  #                                 /proc/sys/kernel etc. stay read-only)
  {
    echo '#!/bin/sh'
    echo "# supervisor of test host $h (written by hosts-up.sh; stopped by hosts-down.sh)"
    for c in "${CGROOTS[@]}"; do echo "mkdir -p $c/$CG/$h && echo \$\$ >$c/$CG/$h/cgroup.procs"; done
    [ "${NET_SYSCTL_RW:-1}" = 1 ] && echo 'export SYSTEMD_NSPAWN_API_VFS_WRITABLE=network'
    echo 'while :; do'
    echo "  [ -e $d/stop ] && exit 0"
    echo "  systemd-nspawn -D $ROOTFS --overlay=$ROOTFS:$U:/ -b --register=no --keep-unit" \
         "--capability=CAP_NET_ADMIN --network-namespace-path=/run/netns/$ns -M $ns --hostname=$h" \
         "--resolv-conf=off --timezone=off --link-journal=no --console=read-only" \
         "${DOCKER_ARGS:-} ${NSPAWN_EXTRA:-}"
    echo '  rc=$?; [ $rc -eq 133 ] || exit $rc'
    echo "  echo \"[hosts-up supervisor] container rebooted, starting it again\"; date +%s >>$d/reboots"
    echo 'done'
  } >"$d/boot.sh"
  setsid sh "$d/boot.sh" </dev/null >"$d/console.log" 2>&1 &
  echo $! >"$d/supervisor.pid"
  echo "$ip4,$h $(cut -d' ' -f1,2 "$U/etc/ssh/ssh_host_ed25519_key.pub")" >>"$TB/known_hosts.new"
done
T2=${EPOCHREALTIME/./}

# ---- client-side files
mv "$TB/known_hosts.new" "$TB/known_hosts"
{
  for k in $(seq 1 "$N"); do printf 'Host h%s\n  HostName %s\n' "$k" "$NET.$((10+k))"; done
  cat <<CONF
Host *
  User root
  Port 22
  IdentityFile $KEY
  IdentitiesOnly yes
  UserKnownHostsFile $TB/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  LogLevel ERROR
CONF
} >"$TB/ssh_config"
{
  echo "[nimbus]"
  for k in $(seq 1 "$N"); do echo "h$k ansible_host=$NET.$((10+k))"; done
  echo; echo "[nimbus:vars]"
  echo "ansible_user=root"; echo "ansible_port=22"
  echo "ansible_ssh_private_key_file=$KEY"
  echo "ansible_ssh_common_args='-o UserKnownHostsFile=$TB/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'"
  echo "ansible_python_interpreter=/usr/bin/python3"
} >"$TB/inventory.ini"

# ---- wait for every sshd to answer (banner), watching that every nspawn is still alive
UP=(); nup=0
deadline=$(( ${EPOCHREALTIME/./} + BOOT_TIMEOUT * 1000000 ))
while :; do
  for k in $(seq 1 "$N"); do
    [ -n "${UP[$k]:-}" ] && continue
    if timeout 1 bash -c "exec 3<>/dev/tcp/$NET.$((10+k))/22 && head -c 4 <&3" 2>/dev/null | grep -q SSH; then
      UP[$k]=$(ms "$T1"); nup=$((nup+1)); continue
    fi
    pid=$(cat "$TB/hosts/h$k/supervisor.pid")
    if [ ! -d "/proc/$pid" ] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
      log "h$k: container exited; console:"; tail -15 "$TB/hosts/h$k/console.log" >&2; exit 1
    fi
  done
  [ "$nup" -lt "$N" ] || break
  [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || { log "timeout: only $nup/$N sshd answer (see $TB/hosts/hK/console.log)"; exit 1; }
  sleep 0.02
done
T3=${EPOCHREALTIME/./}

# ---- nspawn + container init PIDs (for hosts.json and /proc measurements; hosts-down.sh re-discovers them)
for k in $(seq 1 "$N"); do
  d=$TB/hosts/h$k; sup=$(cat "$d/supervisor.pid")
  for c in $(cat /proc/$sup/task/*/children); do grep -q '^systemd-nspawn' "/proc/$c/cmdline" && echo "$c" >"$d/nspawn.pid"; done
  [ -f "$d/nspawn.pid" ] || { log "h$k: no systemd-nspawn under supervisor $sup"; exit 1; }
  pid=$(cat "$d/nspawn.pid")
  for c in $(cat /proc/$pid/task/*/children); do
    [ "$(awk '/^NSpid:/{print $NF}' /proc/$c/status 2>/dev/null)" = 1 ] && echo "$c" >"$d/init.pid"
  done
done

# ---- optionally wait (over SSH, which also proves key auth + pinned host keys) for systemd to settle
STATE=()
if [ "$WAIT" = system ]; then
  waiters=()
  for k in $(seq 1 "$N"); do
    ( timeout "$BOOT_TIMEOUT" ssh -F "$TB/ssh_config" "h$k" 'systemctl is-system-running --wait' >"$TB/hosts/h$k/state" 2>&1 || true ) &
    waiters+=($!)
  done
  wait "${waiters[@]}"     # (a bare `wait` would also wait for the nspawn processes)
  for k in $(seq 1 "$N"); do
    STATE[$k]=$(tail -1 "$TB/hosts/h$k/state")
    case ${STATE[$k]} in running|degraded) ;; *) log "h$k: systemctl is-system-running --wait -> '${STATE[$k]}'"; exit 1;; esac
  done
fi
T4=${EPOCHREALTIME/./}

# ---- hosts.json (plain printf: every value is a simple token, no escaping needed)
{
  printf '{\n  "bed": %s,\n  "tb": "%s",\n  "network": "%s.0/24",\n  "controller": "%s.1",\n  "bridge": "%s",\n' "$BED" "$TB" "$NET" "$NET" "$BR"
  printf '  "ssh_config": "%s",\n  "known_hosts": "%s",\n  "key_path": "%s",\n  "rootfs": "%s",\n  "hosts": [\n' "$TB/ssh_config" "$TB/known_hosts" "$KEY" "$ROOTFS"
  for k in $(seq 1 "$N"); do
    d=$TB/hosts/h$k; hk=$(cut -d' ' -f1,2 "$d/upper/etc/ssh/ssh_host_ed25519_key.pub")
    printf '    {"name": "h%s", "address": "%s", "port": 22, "user": "root", "key_path": "%s",\n' "$k" "$NET.$((10+k))" "$KEY"
    printf '     "host_key": "%s", "known_hosts_line": "%s,h%s %s",\n' "$hk" "$NET.$((10+k))" "$k" "$hk"
    printf '     "netns": "%s", "machine": "%s", "upper": "%s", "console_log": "%s",\n' "$NSP$k" "$NSP$k" "$d/upper" "$d/console.log"
    printf '     "supervisor_pid": %s, "nspawn_pid": %s, "init_pid": %s, "system_state": "%s"}%s\n' "$(cat "$d/supervisor.pid")" "$(cat "$d/nspawn.pid")" "$(cat "$d/init.pid" 2>/dev/null || echo null)" "${STATE[$k]:-unknown}" "$([ "$k" -lt "$N" ] && echo ,)"
  done
  printf '  ]\n}\n'
} >"$TB/hosts.json"

states=""; for k in $(seq 1 "$N"); do states+=" h$k=${STATE[$k]:-?}"; done
echo "bed $BED: $N hosts up on $NET.0/24 (ssh -F $TB/ssh_config hK) in $(ms "$T0") ms" \
     "[setup $(( (T2-T1)/1000 )) ms, boot->all sshd $(( (T3-T1)/1000 )) ms, systemd settled +$(( (T4-T3)/1000 )) ms]"
[ "$WAIT" = system ] && echo "system state:$states"
exit 0
