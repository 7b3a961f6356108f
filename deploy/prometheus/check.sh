#!/usr/bin/env bash
# Checks the alert rules and the dashboard:
#   promtool check rules deploy/prometheus/alerts.yaml
#   promtool test rules: every alert fires on its synthetic series and stays silent on a healthy one
#     (cases in alert-cases.yaml; annotations taken from alerts.yaml; the test file is built in a temp dir)
#   every alert has a runbook section (docs/runbook.md) matching its runbook_url anchor
#   the dashboard is valid JSON, every panel has a datasource and targets, and every metric either
#     file uses is one the service exposes (named in crates/), so a renamed metric breaks this check
# Installs promtool from the Go module proxy when missing (minutes on 2 cores; cached outside the repo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/inventory-service/bin"
PROMTOOL_VERSION=v0.316.0
mkdir -p "$BIN"
if [ ! -x "$BIN/promtool" ]; then
  echo "[alerts] installing promtool $PROMTOOL_VERSION (go install; takes minutes)"
  (cd /tmp && GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION")
fi
python3 -c 'import yaml' 2>/dev/null || pip install --quiet pyyaml

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "[alerts] promtool check rules"
"$BIN/promtool" check rules "$ROOT/deploy/prometheus/alerts.yaml"

python3 - "$ROOT" "$work" <<'PY'
import json, pathlib, re, sys, yaml
root, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rules = yaml.safe_load((root / "deploy/prometheus/alerts.yaml").read_text())
cases = yaml.safe_load((root / "deploy/prometheus/alert-cases.yaml").read_text())
alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
problems = []
for name in alerts:
    if name not in cases or "fires" not in cases[name] or "healthy" not in cases[name]:
        problems.append(f"{name}: needs a `fires` and a `healthy` case in alert-cases.yaml")
for name in cases:
    if name not in alerts:
        problems.append(f"alert-cases.yaml: {name} is not an alert in alerts.yaml")
tests = []
for name, case in cases.items():
    if name not in alerts:
        continue
    rule = alerts[name]
    for kind in ("fires", "healthy"):
        c = case[kind]
        expected = []
        if kind == "fires":
            expected = [{"exp_labels": {**rule.get("labels", {}), **c.get("labels", {})},
                         "exp_annotations": rule.get("annotations", {})}]
        tests.append({
            "name": f"{name} {kind}",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in c["series"].items()],
            "alert_rule_test": [{"eval_time": c["eval_time"], "alertname": name, "exp_alerts": expected}],
        })
(work / "alerts.yaml").write_text((root / "deploy/prometheus/alerts.yaml").read_text())
(work / "alerts.test.yaml").write_text(yaml.safe_dump({"rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
print(f"[alerts] {len(alerts)} alerts, {len(tests)} promtool cases")

# Runbook anchors.
runbook = (root / "docs/runbook.md").read_text()
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
for name, rule in alerts.items():
    url = rule.get("annotations", {}).get("runbook_url", "")
    anchor = url.rsplit("#", 1)[-1] if "#" in url else ""
    if not anchor or anchor not in anchors:
        problems.append(f"{name}: runbook_url anchor #{anchor} is not a heading of docs/runbook.md")

# Metric names the service exposes.
exposed = set()
for f in (root / "crates").rglob("*.rs"):
    text = f.read_text()
    exposed |= set(re.findall(r'(?:counter|gauge|histogram)!\(\s*"([a-z_:][a-z0-9_:]*)"', text))
    exposed |= set(re.findall(r'"(inventory_[a-z0-9_]+)"', text))
exposed |= {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_threads",
            "process_virtual_memory_bytes", "process_start_time_seconds", "up"}
def base(metric):
    return re.sub(r"_(bucket|sum|count)$", "", metric)
promql_words = set("sum max min avg rate increase delta deriv irate by on and or unless without ignoring group_left group_right histogram_quantile absent count topk bottomk bool le offset clamp_min clamp_max time vector scalar label_replace abs ceil floor round sort".split())
def metrics_in(expr):
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    words = re.findall(r"[a-z_:][a-z0-9_:]*", expr)
    return {w for w in words if w not in promql_words and ("_" in w or w == "up") and not re.fullmatch(r"\d+[smhd]", w)}
for name, rule in alerts.items():
    for m in metrics_in(rule["expr"]):
        if base(m) not in exposed and m not in exposed:
            problems.append(f"alert {name} uses {m}, which the service does not expose")
dash = json.loads((root / "deploy/grafana/inventory-service.json").read_text())
panels = [p for p in dash["panels"] if p.get("type") != "row"]
if len(panels) < 12:
    problems.append(f"dashboard: only {len(panels)} panels")
ids = [p["id"] for p in dash["panels"]]
if len(ids) != len(set(ids)):
    problems.append("dashboard: panel ids repeat")
for p in panels:
    if not p.get("datasource") or not p.get("targets"):
        problems.append(f"dashboard panel {p.get('title')}: no datasource or targets")
    for t in p.get("targets", []):
        for m in metrics_in(t["expr"].replace("$__rate_interval", "5m").replace("$instance", "")):
            if base(m) not in exposed and m not in exposed:
                problems.append(f"dashboard panel {p['title']} uses {m}, which the service does not expose")
print(f"[alerts] dashboard: {len(panels)} panels")
for p in problems:
    print("FAIL", p)
sys.exit(1 if problems else 0)
PY

echo "[alerts] promtool test rules"
(cd "$work" && "$BIN/promtool" test rules alerts.test.yaml)
echo "[alerts] all checks passed"
