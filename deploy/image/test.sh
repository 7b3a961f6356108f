#!/usr/bin/env bash
# Checks the built image (`just image-test`): lint, configuration, that the
# binary runs inside the image's own root filesystem as uid 10001 on a
# read-only root, that no build tools or secrets are in it, and its size.
#
# `podman run` does not work on this machine (crun cannot set rlimits), so the
# image is run the low-level way: buildah mounts its root filesystem, a
# read-only bind mount of it is made, and the binary is started there with
# `chroot --userspec=10001:10001`: the image's own loader and libraries, no
# host file visible.
#
# Usage: deploy/image/test.sh [IMAGE]   (default inventory-service:dev)
# Env:   MAX_IMAGE_BYTES (default 100000000, i.e. 100 MB, uncompressed)
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${1:-inventory-service:dev}
MAX_BYTES=${MAX_IMAGE_BYTES:-100000000}
APP=/usr/local/bin/inventory-app
failures=0

pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; failures=$((failures + 1)); }
section() { echo "[image-test] $*"; }

# --- lint --------------------------------------------------------------------
section "lint"
if bash deploy/image/lint.sh | sed 's/^/  /'; then pass "hadolint and shellcheck"; else fail "lint"; fi

# --- configuration (buildah inspect) -----------------------------------------
section "configuration of $IMAGE"
if ! buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
  fail "image $IMAGE not found (build it with deploy/image/build.sh)"
  exit 1
fi
cfg() { buildah inspect --type image --format "$1" "$IMAGE"; }

# Compares one configuration value with the expected one.
expect() {
  local what=$1 want=$2 got=$3
  if [[ $got == "$want" ]]; then pass "$what = $got"; else fail "$what = $got (want $want)"; fi
}
expect "user" "10001:10001" "$(cfg '{{.OCIv1.Config.User}}')"
# (buildah 1.28's templates have no `json`: lists are printed as "a" "b".)
expect "entrypoint" '"/usr/local/bin/inventory-app"' "$(cfg '{{range .OCIv1.Config.Entrypoint}}"{{.}}"{{end}}')"
expect "cmd" '"serve"' "$(cfg '{{range .OCIv1.Config.Cmd}}"{{.}}"{{end}}')"
env_list=$(cfg '{{range .OCIv1.Config.Env}}{{println .}}{{end}}')
for kv in HTTP_ADDR=0.0.0.0:8080 OPS_ADDR=0.0.0.0:9090 LOG_FORMAT=json; do
  if grep -qxF "$kv" <<<"$env_list"; then pass "env $kv"; else fail "env $kv missing"; fi
done
# shellcheck disable=SC2016 # a Go template, not a shell expansion
ports=$(cfg '{{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}')
expect "exposed ports" "8080/tcp 9090/tcp" "${ports% }"
for label in title description source licenses version revision created; do
  value=$(cfg "{{index .OCIv1.Config.Labels \"org.opencontainers.image.$label\"}}")
  if [[ -n $value ]]; then pass "label org.opencontainers.image.$label = $value"; else fail "label org.opencontainers.image.$label missing"; fi
done
# Secrets passed as ENV or build args would show in the configuration and history.
if grep -iE '^[^=]*(SECRET|PASSWORD|TOKEN|PRIVATE|CREDENTIAL)[^=]*=' <<<"$env_list"; then
  fail "secret-like variables in the image environment"
else
  pass "no secret-like variables in the environment"
fi
if cfg '{{range .Docker.History}}{{println .CreatedBy}}{{end}}' | grep -iE '(SECRET|PASSWORD|TOKEN)='; then
  fail "secret-like values in the image history"
else
  pass "no secret-like values in the image history"
fi

# --- the root filesystem ----------------------------------------------------
ctr=$(buildah from --pull=never --quiet "$IMAGE")
ro=$(mktemp -d /tmp/inventory-image-ro.XXXXXX)
cleanup() {
  mountpoint -q "$ro" && umount "$ro"
  rmdir "$ro" 2>/dev/null || true
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mnt=$(buildah mount "$ctr")
# A read-only view of the image, as with `readOnlyRootFilesystem: true`.
mount --bind "$mnt" "$ro"
mount -o remount,bind,ro "$ro"

section "runs as 10001:10001 in the image's read-only root filesystem"
# Runs the binary in the image, as the image's user, with the image's environment.
chroot=$(command -v chroot)
in_image() {
  local env_args=()
  mapfile -t env_args <<<"$env_list"
  env -i "${env_args[@]}" "$chroot" --userspec=10001:10001 "$ro" "$APP" "$@"
}
run_check() {
  local what=$1 pattern=$2 out
  shift 2
  if out=$(in_image "$@" 2>&1) && grep -qE "$pattern" <<<"$out"; then
    pass "$what"
  else
    fail "$what"; head -20 <<<"$out" | while IFS= read -r line; do echo "        $line"; done
  fi
}
run_check "inventory-app --help" 'serve' --help
run_check "inventory-app serve --help" 'HTTP_ADDR' serve --help
run_check "inventory-app migrate --help" 'DATABASE_URL' migrate --help
run_check "inventory-app --version" '^inventory-app [0-9]' --version
# A real command end to end (JSON logging, crypto); the secret is made up here.
run_check "inventory-app token (prints a JWT)" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' \
  token --jwt-secret "$(head -c 24 /dev/urandom | base64)"
if [[ -w $ro/usr/local/bin ]] || touch "$ro/.probe" 2>/dev/null; then
  fail "root filesystem view is writable"
else
  pass "root filesystem mounted read-only for these runs"
fi
owner=$(stat -c '%u:%g %a' "$mnt$APP" 2>/dev/null || echo missing)
expect "binary owner and mode" "0:0 755" "$owner"
# What the binary links (the runs above prove the image provides all of it),
# and its line tables, kept (compressed) for file:line in panic backtraces.
if needed=$(readelf -d "$mnt$APP" 2>/dev/null | grep -oP 'NEEDED.*\[\K[^]]+'); then
  pass "links only: ${needed//$'\n'/ }"
else
  fail "cannot read the dynamic section of $APP"
fi
if readelf -S --wide "$mnt$APP" 2>/dev/null | grep -E '\.debug_line ' | grep -qE ' [A-Z]*C[A-Z]* '; then
  pass "debug line tables present, compressed"
else
  fail "no compressed .debug_line in $APP"
fi

section "contents"
# The only program is the service: no shell, package manager, compiler, cargo.
programs=$(cd "$mnt" && find . -xdev -type f -perm /111 ! -name '*.so' ! -name '*.so.*' | sed 's/^\.//')
expect "executables (besides shared libraries)" "$APP" "$programs"
for path in /bin/sh /bin/bash /usr/bin/apt-get /usr/bin/dpkg /usr/bin/gcc /usr/bin/cc /usr/bin/ld \
  /usr/bin/make /usr/bin/objcopy /usr/local/cargo /usr/local/rustup /root/.cargo /src; do
  if [[ -e $mnt$path || -L $mnt$path ]]; then fail "$path present"; else pass "$path absent"; fi
done
secrets=$(cd "$mnt" && find . -xdev \( -name '.env' -o -name '*.env' -o -name 'stack.env' -o -name '*.pem' \
  -o -name '*.key' -o -name 'id_rsa*' -o -name 'id_ed25519*' -o -name '.netrc' -o -name '.pgpass' \
  -o -name '.git-credentials' -o -name 'credentials*' -o -name '*.p12' -o -name '.git' \) -print)
if [[ -z $secrets ]]; then pass "no .env, stack.env, keys, credentials or .git"; else fail "secret-like files: $secrets"; fi
if grep -rlI -- '-----BEGIN [A-Z ]*PRIVATE KEY-----' "$mnt" 2>/dev/null; then
  fail "private key material in a text file"
else
  pass "no private key material in text files"
fi

section "size"
bytes=$(du -sb --apparent-size "$mnt" | cut -f1)
layers=$(cfg '{{len .OCIv1.RootFS.DiffIDs}}')
binary=$(stat -c %s "$mnt$APP" 2>/dev/null || echo 0)
echo "  size  $((bytes / 1000000)) MB uncompressed ($bytes bytes, $layers layers; binary $((binary / 1000000)) MB)"
if ((bytes <= MAX_BYTES)); then pass "size under $((MAX_BYTES / 1000000)) MB"; else fail "size over $((MAX_BYTES / 1000000)) MB"; fi

echo
if ((failures)); then
  section "$failures check(s) failed"
  exit 1
fi
section "all checks passed"
