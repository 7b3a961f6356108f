#!/usr/bin/env bash
# The domain crate must not depend on any adapter or runtime crate.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(diesel|diesel-async|diesel_migrations|bb8|actix-web|actix-http|rdkafka|rdkafka-sys|tokio-postgres|tokio) '
tree="$(cargo tree -p inventory-domain -e normal --prefix none --no-dedupe)"
if found="$(grep -E "$forbidden" <<< "$tree" | sort -u)" && [ -n "$found" ]; then
  echo "inventory-domain depends on adapter or runtime crates:" >&2
  echo "$found" >&2
  exit 1
fi
echo "inventory-domain: no adapter or runtime dependency ($(wc -l <<< "$tree") crates checked)"
