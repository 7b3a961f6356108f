#!/usr/bin/env bash
# Builds the container image from the prebuilt release binary (`just image`):
#   inventory-service:dev and inventory-service:<git short sha>[-dirty]
#
# It packages target/release/inventory-app (build it first with
# `cargo build --release -p inventory-app`; `just image` does) with
# `buildah bud --build-arg BINARY_SOURCE=prebuilt`, so the final stage is the
# very one `docker build -f deploy/Dockerfile .` produces after compiling in
# the image. The Debian base image is made locally if missing (base.sh), since
# no registry can be reached here: the build never pulls (--pull=never).
#
# Usage: deploy/image/build.sh [extra buildah bud args...]
# Env:   IMAGE_NAME (default inventory-service)
set -euo pipefail
cd "$(dirname "$0")/../.."

NAME=${IMAGE_NAME:-inventory-service}
BINARY=target/release/inventory-app

log() { echo "[image] $*"; }
die() { echo "[image] error: $*" >&2; exit 1; }

[[ -x $BINARY ]] || die "$BINARY is missing: build it first with 'cargo build --release -p inventory-app' (or run 'just image')"

bash deploy/image/base.sh

# The tags and labels say which commit the image is; a tree with uncommitted
# changes gets a "-dirty" tag so that a clean sha tag never names other code.
sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $sha != unknown && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  sha+=-dirty
  revision+=-dirty
fi
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
source=$(git remote get-url origin 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# The per-build labels go in as build args (as with `docker build`) and again
# as --label: buildah's layer cache (1.28) reuses a LABEL step whose ARG
# values changed, which would leave the previous build's revision and date.
meta=(VERSION="$version" REVISION="$revision" SOURCE="$source" CREATED="$created")
build_args=() labels=()
for kv in "${meta[@]}"; do
  build_args+=(--build-arg "$kv")
  key=${kv%%=*}
  labels+=(--label "org.opencontainers.image.${key,,}=${kv#*=}")
done

log "building $NAME:dev and $NAME:$sha from $BINARY ($(du -h "$BINARY" | cut -f1))"
start=$SECONDS
# --isolation chroot: RUN steps need no OCI runtime (crun cannot set rlimits
# here). --layers: cache the base and tool stages between builds.
buildah bud \
  --isolation chroot \
  --pull=never \
  --layers \
  --file deploy/Dockerfile \
  --build-arg BINARY_SOURCE=prebuilt \
  "${build_args[@]}" \
  "${labels[@]}" \
  --tag "$NAME:dev" \
  --tag "$NAME:$sha" \
  "$@" \
  .
log "built $NAME:dev and $NAME:$sha in $((SECONDS - start))s"
buildah images --filter reference="$NAME:dev"
