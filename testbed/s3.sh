#!/usr/bin/env bash
# An S3 endpoint for the S3 Volume tests: moto's server (an emulator of the S3 API, from PyPI)
# on loopback, with authentication on, so that a wrong key is refused as S3 refuses it.
#   testbed/s3.sh install            the venv (pinned versions), once, in the test bed's cache
#   testbed/s3.sh up PORT DIR        starts moto_server on 127.0.0.1:PORT (pid in DIR/moto.pid,
#                                    log in DIR/moto.log), makes an IAM user with an access key
#                                    allowed everything, and writes it to DIR/keys (id, secret)
# It is an emulator: what it accepts, a real S3 service may refuse (docs/volumes.md).
set -euo pipefail
CACHE=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
V=$CACHE/s3/venv
MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8

install() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/s3.lock"; flock 9   # tests that start at once install it once
  if [ -x "$V/bin/moto_server" ] && "$V/bin/python3" -c 'import boto3' 2>/dev/null; then return 0; fi
  command -v python3 >/dev/null || { echo "s3.sh: python3 is missing" >&2; exit 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
  rm -rf "$V"; mkdir -p "$(dirname "$V")"
  python3 -m venv "$V"
  "$V/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"
}

up() {
  local port=$1 dir=$2
  install
  mkdir -p "$dir"
  # The first three calls (the user, its policy, its key) are let through unauthenticated;
  # every later one must be signed with a key moto knows.
  INITIAL_NO_AUTH_ACTION_COUNT=3 setsid "$V/bin/moto_server" -H 127.0.0.1 -p "$port" \
    >"$dir/moto.log" 2>&1 < /dev/null &
  echo $! >"$dir/moto.pid"
  PORT=$port DIR=$dir "$V/bin/python3" - <<'PY'
import os, socket, time, json, boto3
port = int(os.environ["PORT"])
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
    except OSError:
        time.sleep(0.05)
else:
    raise SystemExit("moto_server did not listen")
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="nimbus")
iam.put_user_policy(UserName="nimbus", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="nimbus")["AccessKey"]
path = os.path.join(os.environ["DIR"], "keys")
with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    f.write(key["AccessKeyId"] + "\n" + key["SecretAccessKey"] + "\n")
PY
}

case "${1:-}" in
  install) install ;;
  up) up "$2" "$3" ;;
  *) echo "usage: $0 install | up PORT DIR" >&2; exit 2 ;;
esac
