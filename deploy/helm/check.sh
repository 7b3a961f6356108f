#!/usr/bin/env bash
# Validates the Helm chart and the compose file; installs the tools it needs
# when missing (helm from the Go module proxy, the Python tools from PyPI into a
# venv), both cached outside the repository so a second run is quick.
#
#   bash deploy/helm/check.sh                 # everything below
#   bash deploy/helm/check.sh --sync-alerts   # first copy deploy/prometheus/alerts.yaml into the chart
#
#  1. the chart's copy of the alert rules equals deploy/prometheus/alerts.yaml
#  2. helm lint --strict, with the default values and with ci-values.yaml;
#     every key of values.yaml has a comment
#  3. helm template with the default values, with every optional component on
#     (ci-values.yaml: KEDA, Kafka SASL_SSL + mTLS, PostgreSQL TLS), the same
#     with the HPA instead of KEDA, and with the identity provider's keys (JWKS)
#     instead of fixed ones; combinations the chart must refuse are refused,
#     and OIDC discovery alone is accepted as a token key
#  4. our own checks of the rendered manifests (check_deploy.py: no `latest`
#     image, every env variable one the service reads, all of serve's set by
#     the all-on renders, hooks, KEDA's cap, probes; secrets only as files:
#     every *_FILE / *_LOCATION path a file of a read-only volume the pod mounts,
#     readable by uid 10001 only, every mounted secret file named by a variable;
#     the NetworkPolicy lets the pods reach every configured endpoint's port)
#  5. kubernetes-validate --strict against the bundled Kubernetes schemas; the
#     CRD kinds ServiceMonitor, PrometheusRule and ScaledObject have no bundled
#     schema and are left to step 4 and a YAML parse
#  6. checkov (kubernetes framework, deploy/helm/.checkov.yaml): no failed check
#  7. the compose file: the compose-spec JSON schema (check-jsonschema's
#     vendored copy), then references, image tags and variables (check_deploy.py),
#     and yamllint on the compose, collector, Prometheus and Grafana files
#
# Rendered manifests go to a temporary directory, removed at exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chart="$here/inventory-service"
compose_dir="$repo/deploy/compose"

HELM_VERSION="v3.22.0"
KUBE_VERSION="1.33.0"
PY_TOOLS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 checkov==3.3.30 yamllint==1.38.0)

cache="${XDG_CACHE_HOME:-$HOME/.cache}/inventory-service"
bin="$cache/bin"
venv="$cache/venv"
helm="$bin/helm"

say() { printf '[deploy-check] %s\n' "$*"; }
die() { printf '[deploy-check] FAILED: %s\n' "$*" >&2; exit 1; }

sync_alerts=0
for arg in "$@"; do
  case "$arg" in
    --sync-alerts) sync_alerts=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument $arg" ;;
  esac
done

# --- tools ---------------------------------------------------------------------
if [[ ! -x "$helm" ]] || ! "$helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION%.*}"; then
  command -v go >/dev/null || die "helm is missing and so is go to build it"
  say "installing helm $HELM_VERSION into $bin (go install; a few minutes on 2 cores)"
  mkdir -p "$bin"
  (cd "$cache" && GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
fi
stamp="$venv/.tools-$(printf '%s\n' "${PY_TOOLS[@]}" | sha256sum | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
  say "installing ${PY_TOOLS[*]} into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
  touch "$stamp"
fi
py="$venv/bin/python"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- 1. alert rules ------------------------------------------------------------
alerts_src="$repo/deploy/prometheus/alerts.yaml"
alerts_copy="$chart/files/alerts.yaml"
[[ -f "$alerts_src" ]] || die "deploy/prometheus/alerts.yaml is missing (the PrometheusRule and Prometheus in compose load it)"
if (( sync_alerts )); then
  cp "$alerts_src" "$alerts_copy"
  say "copied deploy/prometheus/alerts.yaml to the chart's files/alerts.yaml"
fi
if ! cmp -s "$alerts_src" "$alerts_copy"; then
  die "deploy/helm/inventory-service/files/alerts.yaml differs from deploy/prometheus/alerts.yaml (or is missing): run 'bash deploy/helm/check.sh --sync-alerts' and commit the copy"
fi
say "alerts: the chart's copy equals deploy/prometheus/alerts.yaml"

# --- 2. lint ---------------------------------------------------------------------
"$py" "$here/check_deploy.py" values-doc "$repo" "$chart/values.yaml" || die "values.yaml: undocumented keys, above"
say "helm lint --strict (default values, ci-values.yaml); every key of values.yaml documented"
"$helm" lint --strict --quiet --kube-version "$KUBE_VERSION" "$chart" >"$tmp/lint.log" 2>&1 \
  || { cat "$tmp/lint.log"; die "helm lint (default values)"; }
"$helm" lint --strict --quiet --kube-version "$KUBE_VERSION" -f "$here/ci-values.yaml" "$chart" >"$tmp/lint.log" 2>&1 \
  || { cat "$tmp/lint.log"; die "helm lint (ci-values.yaml)"; }

# --- 3. render -------------------------------------------------------------------
render() { # name, helm template args...
  local name="$1"; shift
  "$helm" template inventory "$chart" --namespace inventory --kube-version "$KUBE_VERSION" "$@" \
    >"$tmp/$name.yaml" 2>"$tmp/$name.err" || { cat "$tmp/$name.err"; die "helm template ($name)"; }
}
render default
render all-on -f "$here/ci-values.yaml"
render all-on-hpa -f "$here/ci-values.yaml" --set keda.enabled=false --set autoscaling.enabled=true
jwks=(--set secrets.jwtSecretKey= --set jwtPublicKey.enabled=false
      --set config.JWT_JWKS_URL=https://id.shop.example/realms/shop/protocol/openid-connect/certs)
render all-on-jwks -f "$here/ci-values.yaml" "${jwks[@]}"
renders=(default all-on all-on-hpa all-on-jwks)
say "helm template: default, all-on (KEDA), all-on (HPA), all-on (JWKS)"

refuse() { # what, expected message, helm template args...
  local what="$1" expect="$2"; shift 2
  if "$helm" template inventory "$chart" --kube-version "$KUBE_VERSION" "$@" >/dev/null 2>"$tmp/refuse.err"; then
    die "the chart accepted $what"
  fi
  grep -q "$expect" "$tmp/refuse.err" || { cat "$tmp/refuse.err"; die "the chart refused $what, but not with '$expect'"; }
}
refuse "image.tag=latest" "not latest" --set image.tag=latest
refuse "HPA and KEDA together" "exclude each other" --set keda.enabled=true --set autoscaling.enabled=true
refuse "a grace period shorter than the drain" "terminationGracePeriodSeconds" --set terminationGracePeriodSeconds=30
refuse "no token key at all" "no token key" --set secrets.jwtSecretKey=
refuse "OIDC discovery without an issuer" "needs config.JWT_ISSUER" --set secrets.jwtSecretKey= --set config.JWT_OIDC_DISCOVERY=true
refuse "a JWKS URL with a fixed key" "exclude a fixed key" --set config.JWT_JWKS_URL=https://id.example/certs
refuse "a secret in config" "mounted as files" --set config.KAFKA_SASL_PASSWORD=x
refuse "SASL without its password" "passwordSecret" --set kafka.security.protocol=SASL_SSL \
  --set kafka.security.sasl.mechanism=SCRAM-SHA-512 --set kafka.security.sasl.username=u
refuse "TLS files with PLAINTEXT" "use SSL or SASL_SSL" --set kafka.security.tls.caSecret.name=ca
refuse "an unknown protocol" "kafka.security.protocol" --set kafka.security.protocol=TLS
"$helm" template inventory "$chart" --kube-version "$KUBE_VERSION" --set secrets.jwtSecretKey= \
  --set config.JWT_OIDC_DISCOVERY=true --set config.JWT_ISSUER=https://id.example/realms/shop >/dev/null 2>"$tmp/accept.err" \
  || { cat "$tmp/accept.err"; die "the chart refused OIDC discovery with an issuer as the only token key"; }
say "the chart refuses a latest tag, HPA with KEDA, a short grace period, no token key, JWKS with a fixed key,"
say "  discovery without an issuer, a secret in config, broken Kafka security; accepts OIDC discovery as the key"

# --- 4. our checks ------------------------------------------------------------------
for name in "${renders[@]}"; do
  "$py" "$here/check_deploy.py" manifests "$repo" "$tmp/$name.yaml" "$tmp/$name" \
    || die "rendered manifests ($name), above"
done
"$py" "$here/check_deploy.py" complete "$repo" "$tmp"/all-on*.yaml || die "the all-on renders leave variables unset, above"
grep -q '^kind: ScaledObject' "$tmp/all-on.yaml" && grep -q '^  maxReplicaCount: 4$' "$tmp/all-on.yaml" \
  || die "KEDA's maxReplicaCount (10 in ci-values.yaml) is not capped at the 4 partitions"
say "rendered manifests: images pinned, env variables known (all of serve's set by the all-on renders), hooks, topics,"
say "  probes, KEDA capped, secrets only as files (paths = mounted files, 0440 for fsGroup 10001), egress ports"

# --- 5. kubernetes-validate --------------------------------------------------------------
for name in "${renders[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$tmp/$name/core.yaml" \
    || die "kubernetes-validate ($name)"
done
say "kubernetes-validate --strict -k $KUBE_VERSION: passed (ServiceMonitor, PrometheusRule, ScaledObject not schema-checked: no bundled schema)"

# --- 6. checkov ---------------------------------------------------------------------------
for name in "${renders[@]}"; do
  mkdir -p "$tmp/checkov-$name"
  cp "$tmp/$name.yaml" "$tmp/checkov-$name/manifests.yaml"
  if ! (cd "$tmp" && "$venv/bin/checkov" --config-file "$here/.checkov.yaml" -d "checkov-$name" \
          >"$tmp/checkov-$name.log" 2>&1); then
    grep -v '^\s*$' "$tmp/checkov-$name.log" | grep -vE 'Traceback|^\s+(File|raise|return|\^|self|conn|retries|request|response|sock|timeout)' | tail -40
    die "checkov ($name)"
  fi
  grep -E 'Passed checks|Failed checks' "$tmp/checkov-$name.log" | sed "s/^/[deploy-check]   checkov $name: /"
done

# --- 7. compose --------------------------------------------------------------------------
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose_dir/compose.yaml" >"$tmp/compose.log" 2>&1 \
  || { cat "$tmp/compose.log"; die "compose.yaml does not follow the compose-spec schema"; }
"$py" "$here/check_deploy.py" compose "$repo" "$compose_dir/compose.yaml" || die "compose.yaml, above"
"$venv/bin/yamllint" -s -c "$here/yamllint.yaml" "$compose_dir" "$here/ci-values.yaml" "$chart/values.yaml" "$chart/Chart.yaml" \
  || die "yamllint"
say "compose.yaml: compose-spec schema, references, tags and variables; yamllint on compose/ and the values"
say "all checks passed"
