#!/usr/bin/env bash
# Issue 29: the container image's size. Builds nimbus with the dist profile (as the image's
# own build stage does), then the image from the repository's Dockerfile on the Debian slim
# base made here (testbed/docker/image-base.sh; no registry), and prints the sizes.
#   sudo bash bench/image.sh          # root: the Docker engine; ~11 min from clean on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${TAG:-nimbus:bench}
bin=${CARGO_TARGET_DIR:-target}/dist/nimbus
t0=$(date +%s)
cargo build --locked --profile dist -p nimbus --bin nimbus
build_s=$(( $(date +%s) - t0 ))
base=$(bash testbed/docker/image-base.sh)
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
cp Dockerfile .dockerignore "$ctx/"
install -D -m 0755 "$bin" "$ctx/prebuilt/nimbus"
t1=$(date +%s)
docker build -q --build-arg RUST_IMAGE="$base" --build-arg BASE_IMAGE="$base" -t "$tag" "$ctx" >/dev/null
image_s=$(( $(date +%s) - t1 ))
size() { docker image inspect -f '{{.Size}}' "$1"; }
printf 'binary (dist): %s bytes (cargo build %s s)\n' "$(stat -c %s "$bin")" "$build_s"
printf 'base %s: %s bytes\n' "$base" "$(size "$base")"
printf 'image %s: %s bytes (docker build %s s)\n' "$tag" "$(size "$tag")" "$image_s"
docker image inspect -f 'user {{.Config.User}}, volumes {{json .Config.Volumes}}, healthcheck {{json .Config.Healthcheck.Test}}' "$tag"
