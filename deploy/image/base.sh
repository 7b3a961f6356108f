#!/usr/bin/env bash
# Makes the Debian base image `docker.io/library/debian:bookworm-slim` locally,
# because no public container registry can be reached from this machine.
#
# The image is a debootstrap `minbase` of bookworm from this machine's own
# Debian mirror, trimmed the way the official slim image is (no apt lists,
# docs, man pages or locales), and imported under the official name so that
# deploy/Dockerfile builds unchanged here (`buildah bud --pull=never`) and
# elsewhere (`docker build`, which pulls the real one).
#
# It is only a build-time base: the Dockerfile uses it to download and unpack
# the few Debian packages of the runtime root filesystem and to compress the
# binary's debug info. Nothing of it but those package files reaches the final
# image, so its size does not matter for the final one.
#
# Usage: deploy/image/base.sh [--force]   (--force: rebuild even if cached)
# Env:   BASE_IMAGE (default docker.io/library/debian:bookworm-slim)
#        XDG_CACHE_HOME (cache in ${XDG_CACHE_HOME:-$HOME/.cache}/inventory-service)
set -euo pipefail

IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
SUITE=bookworm
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/inventory-service
TARBALL=$CACHE/debian-$SUITE-minbase.tar
FORCE=0
[[ ${1:-} == --force ]] && FORCE=1

log() { echo "[base] $*"; }
die() { echo "[base] error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and buildah mount need it)"

# Installs the Debian packages providing the given commands, quietly, when absent.
need() {
  local missing=() cmd
  for cmd in "$@"; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# The first URI of this machine's apt sources whose path ends in the given
# suffix ("/debian" or "/debian-security"), from one-line or deb822 files.
apt_uri() {
  local suffix=$1
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' \
    | grep -oE '(https?|file)://[^[:space:]]+' \
    | sed 's:/*$::' | grep -E "${suffix}\$" | head -n1 || true
}

need buildah
if [[ $FORCE -eq 0 ]] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present (use --force to rebuild)"
  exit 0
fi

mkdir -p "$CACHE"
if [[ $FORCE -eq 1 || ! -s $TARBALL ]]; then
  need debootstrap
  MIRROR=$(apt_uri /debian)
  SECURITY=$(apt_uri /debian-security)
  [[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*}"
  SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
  log "debootstrap --variant=minbase $SUITE from $MIRROR"

  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS"' EXIT
  # The .deb cache makes a second cold run (e.g. after --force) much faster.
  mkdir -p "$CACHE/debs"
  start=$SECONDS
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/debootstrap.log"
  log "debootstrap took $((SECONDS - start))s"

  # --- trim like the official slim image -------------------------------------
  # Keep dpkg from installing docs, man pages and translations in later
  # `apt-get install`s too (the Dockerfile installs binutils on this base).
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# Slim image: no documentation or translations (copyright notices are kept).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  # apt: drop downloaded .debs after each install, no translated indexes.
  cat >"$ROOTFS/etc/apt/apt.conf.d/slim" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
EOF
  # The same suites as the official image: release, updates and security.
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda}/* \
    "$ROOTFS"/usr/share/locale/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
    "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.bash_history
  # Host-specific files that container runtimes provide (or must not inherit).
  rm -f "$ROOTFS"/etc/hostname "$ROOTFS"/etc/resolv.conf
  : >"$ROOTFS/etc/machine-id"

  tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOTFS"
  trap - EXIT
else
  log "using cached root filesystem $TARBALL"
fi

# --- import: the buildah equivalent of `tar -C DIR -c . | podman import - NAME`
ctr=$(buildah from scratch)
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
tar --numeric-owner --xattrs -C "$mnt" -xpf "$TARBALL"
buildah umount "$ctr" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd '["bash"]' \
  --label org.opencontainers.image.description="Debian $SUITE minbase (slim), built locally by deploy/image/base.sh" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
log "imported $IMAGE ($(du -h "$TARBALL" | cut -f1) uncompressed)"
