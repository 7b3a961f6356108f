#!/usr/bin/env bash
# Checks the alert rules, their unit tests, the runbook links and the Grafana dashboard:
#   1. promtool check rules deploy/prometheus/alerts.yaml
#   2. promtool test rules deploy/prometheus/alerts.test.yaml (every alert fires on a synthetic
#      series and stays silent on a healthy one)
#   3. (check_assets.py) every alert has a severity, a summary, a description and a runbook_url whose
#      anchor is a heading of docs/runbook.md; every alert has a firing and a silent test; the
#      dashboard is valid JSON with stable, unique panel ids, a datasource, targets and a unit on
#      every panel, and honours $instance; and every metric and label the dashboard and the alerts
#      use is one the service exposes (read from crates/: counter!/gauge!/histogram! calls, the
#      metrics-process collector, `up`), so a renamed metric or label breaks this check.
#
# promtool is installed when missing (or of another version) with `go install` into
# ${XDG_CACHE_HOME:-~/.cache}/inventory-service/bin, outside the repository, and reused from there:
# the first build takes minutes on 2 cores. PROMTOOL=/path/to/promtool uses another binary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/prometheus"
PROMTOOL_VERSION=v0.316.0
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/inventory-service/bin"

say() { echo "[alerts] $*"; }

promtool_ok() {
  [[ -x "$1" ]] || return 1
  # A binary built by `go install` names its module version; without go, trust the binary.
  command -v go >/dev/null || return 0
  go version -m "$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/prometheus/prometheus[[:space:]]+${PROMTOOL_VERSION}([[:space:]]|$)"
}

if [[ -n "${PROMTOOL:-}" ]]; then
  promtool="$PROMTOOL"
  [[ -x "$promtool" ]] || { say "PROMTOOL=$promtool is not executable"; exit 1; }
else
  promtool="$BIN/promtool"
  if ! promtool_ok "$promtool"; then
    command -v go >/dev/null || { say "promtool is missing and go is not installed (apt-get install golang-go, or set PROMTOOL)"; exit 1; }
    say "installing promtool $PROMTOOL_VERSION into $BIN (go install; takes minutes the first time)"
    mkdir -p "$BIN"
    started=$SECONDS
    (cd /tmp && GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
      go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION")
    say "promtool installed in $((SECONDS - started)) s"
  fi
fi

python3 -c 'import yaml' 2>/dev/null || pip install --quiet pyyaml

say "promtool check rules"
"$promtool" check rules --lint=all --lint-fatal "$HERE/alerts.yaml"

say "promtool test rules"
"$promtool" test rules "$HERE/alerts.test.yaml"

say "runbook links, test coverage, dashboard, metric names"
python3 "$HERE/check_assets.py" "$ROOT"

# The Helm chart ships a copy of the rules; its own check (deploy/helm/check.sh) fails on drift.
copy="$ROOT/deploy/helm/inventory-service/files/alerts.yaml"
if [[ -f "$copy" ]] && ! cmp -s "$copy" "$HERE/alerts.yaml"; then
  say "note: the chart's copy differs from alerts.yaml; run: bash deploy/helm/check.sh --sync-alerts"
fi
say "all checks passed"
