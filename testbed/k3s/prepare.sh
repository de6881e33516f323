#!/usr/bin/env bash
# Puts on test-bed hosts what the k3s stand-in (testbed/k3s/k3s) runs, as the test bed's own
# software: the test API server (nimbus-kube-testserver, stripped), a certificate authority
# and the API's certificate signed by it for 127.0.0.1 and ADDRESSES (comma-separated IPs: the
# server's, and its overlay address when the Cluster is on a Network), and FAIL_IMAGE (a
# Deployment whose image contains it never becomes available).
#   bash testbed/k3s/prepare.sh SSH_CONFIG TESTSERVER_BINARY ADDRESSES FAIL_IMAGE HOST...
set -euo pipefail
config=$1 binary=$2 addresses=$3 fail=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${key[@]}" -days 7 -subj /CN=k3s-server-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req "${key[@]}" -subj /CN=k3s -keyout tls.key -out tls.csr 2>/dev/null
san="IP:127.0.0.1"
IFS=, read -ra ips <<<"$addresses"
for ip in "${ips[@]}"; do san="$san,IP:$ip"; done
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >tls.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile tls.ext -out tls.crt 2>/dev/null
objcopy --strip-all "$binary" nimbus-kube-testserver
dir=/usr/local/lib/nimbus-test
for host in "$@"; do
  tar -c nimbus-kube-testserver ca.crt tls.crt tls.key |
    ssh -F "$config" "$host" "mkdir -p $dir && tar -x -C $dir && chmod 0755 $dir/nimbus-kube-testserver && echo '$fail' > $dir/fail-image"
done
