#!/usr/bin/env python3
"""Checks the alert rules, their tests, the runbook and the dashboard against each other and
against the metrics the service exposes. Run by deploy/prometheus/check.sh (after promtool):

    python3 deploy/prometheus/check_assets.py <repository root>

- alerts.yaml: every alert has a severity (critical, warning or info), a summary, a description
  and a runbook_url pointing at a heading of docs/runbook.md, whose own #links resolve too;
- alerts.test.yaml: every alert has a test where it fires and one where it stays silent, and
  tests name no alert that does not exist;
- deploy/grafana/inventory-service.json: valid JSON, the `datasource` and `instance` variables,
  unique panel ids, panels that do not overlap, and on every panel a datasource, targets with an
  expression and a unit; every selector filters on $instance;
- every metric name and label the alerts and the dashboard use is one the service exposes. The
  names come from the sources under crates/ (counter!/gauge!/histogram! calls, with their
  labels; the metrics-process collector's names when it is wired in), plus `up`; a histogram
  also exposes its _bucket, _sum and _count series.
"""

import json
import pathlib
import re
import sys

import yaml

RUNBOOK_URL = "https://github.com/shop/inventory-service/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning", "info"}
# Labels Prometheus (or the Prometheus Operator) adds to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
# What metrics-process 2.x exposes on Linux (crates: metrics_process::Collector).
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
}
# Names the service is about to expose but that are not in crates/ yet. Keep empty; an entry
# here must say who adds it and be removed once it lands.
PENDING = set()

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan", "atan2", "start", "end"}

problems = []


def problem(message):
    problems.append(message)


def exposed_metrics(root):
    """{name: set of labels} from the Rust sources."""
    metrics = {}
    call = re.compile(r"\b(counter|gauge|histogram)!\(")
    process = False
    for path in sorted((root / "crates").rglob("*.rs")):
        text = path.read_text()
        if "metrics_process::Collector" in text:
            process = True
        for m in call.finditer(text):
            # The macro's arguments, up to its closing parenthesis.
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            args = text[m.end():i - 1]
            name = re.match(r'\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', args)
            if not name:
                continue  # a name held in a variable (metrics-process's own)
            labels = set(re.findall(r'"([a-zA-Z_][a-zA-Z0-9_]*)"\s*=>', args))
            names = [name.group(1)]
            if m.group(1) == "histogram":
                names += [name.group(1) + suffix for suffix in ("_bucket", "_sum", "_count")]
            for n in names:
                metrics.setdefault(n, set()).update(labels | {"le"} if n.endswith("_bucket") else labels)
    if process:
        for n in PROCESS_METRICS:
            metrics.setdefault(n, set())
    metrics.setdefault("up", set())
    for n in PENDING:
        metrics.setdefault(n, set())
    return metrics


def promql_uses(expr):
    """(selectors, grouping labels) of a PromQL expression: selectors as (metric, {label: value})."""
    expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
    expr = re.sub(r"\[\$\w+\]", "[5m]", expr)
    selectors = []
    # Matchers first (they hold strings with anything in them).
    matcher_blocks = []

    def take_block(m):
        matcher_blocks.append(m.group(0))
        return f" __BLOCK{len(matcher_blocks) - 1}__ "

    expr = re.sub(r"\{(?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*\}", take_block, expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)  # other strings (label_replace arguments)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    grouping = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        grouping |= {label.strip() for label in m.group(2).split(",") if label.strip()}
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*__BLOCK(\d+)__)?(\s*\()?", expr)
    for t in tokens:
        word, block, call = t.group(1), t.group(3), t.group(4)
        if word.startswith("__BLOCK"):
            continue
        if call and not block:
            continue  # a function
        if word.lower() in PROMQL_KEYWORDS:
            continue
        matchers = {}
        if block is not None:
            body = matcher_blocks[int(block)][1:-1]
            for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body):
                matchers[lm.group(1)] = lm.group(3)
        selectors.append((word, matchers))
    return selectors, grouping


def check_expr(where, expr, metrics, all_labels, need_instance=False):
    selectors, grouping = promql_uses(expr)
    if not selectors:
        problem(f"{where}: no metric found in {expr!r}")
    for metric, matchers in selectors:
        if metric not in metrics:
            problem(f"{where}: uses {metric}, which the service does not expose")
            continue
        known = metrics[metric] | TARGET_LABELS
        for label in matchers:
            if label != "__name__" and label not in known:
                problem(f"{where}: {metric} has no label {label!r} (it has {sorted(metrics[metric]) or 'none'})")
        if need_instance and matchers.get("instance") != "$instance":
            problem(f"{where}: {metric} is not filtered by instance=~\"$instance\"")
    for label in grouping:
        if label not in all_labels:
            problem(f"{where}: groups by {label!r}, which no exposed metric has")


def github_anchor(heading):
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def check_alerts(root, metrics, all_labels):
    rules = yaml.safe_load((root / "deploy/prometheus/alerts.yaml").read_text())
    if not isinstance(rules, dict) or "groups" not in rules:
        problem("alerts.yaml: no top-level `groups`")
        return {}
    runbook = (root / "docs/runbook.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+?)\s*#*$", runbook, re.M)}
    alerts = {}
    for group in rules["groups"]:
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not name:
                continue
            if name in alerts:
                problem(f"alerts.yaml: {name} is defined twice")
            alerts[name] = rule
            severity = rule.get("labels", {}).get("severity")
            if severity not in SEVERITIES:
                problem(f"{name}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problem(f"{name}: no {key} annotation")
            url = annotations.get("runbook_url", "")
            if not url.startswith(RUNBOOK_URL):
                problem(f"{name}: runbook_url {url!r} does not start with {RUNBOOK_URL}")
            elif url[len(RUNBOOK_URL):] not in anchors:
                problem(f"{name}: runbook_url anchor #{url[len(RUNBOOK_URL):]} is not a heading of docs/runbook.md")
            check_expr(f"alert {name}", rule["expr"], metrics, all_labels)
    for link in sorted(set(re.findall(r"\]\(#([^)]+)\)", runbook))):
        if link not in anchors:
            problem(f"docs/runbook.md: link #{link} is not a heading")
    return alerts


def check_tests(root, alerts):
    tests = yaml.safe_load((root / "deploy/prometheus/alerts.test.yaml").read_text())
    fires, silent = set(), set()
    cases = 0
    for group in tests.get("tests", []):
        for case in group.get("alert_rule_test", []):
            cases += 1
            name = case.get("alertname")
            if name not in alerts:
                problem(f"alerts.test.yaml: {group.get('name')}: {name} is not an alert of alerts.yaml")
            (fires if case.get("exp_alerts") else silent).add(name)
    for name in alerts:
        if name not in fires:
            problem(f"{name}: no test where it fires (alerts.test.yaml)")
        if name not in silent:
            problem(f"{name}: no test where it stays silent (alerts.test.yaml)")
    return len(tests.get("tests", [])), cases


def check_dashboard(root, metrics, all_labels):
    path = root / "deploy/grafana/inventory-service.json"
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problem(f"dashboard: not valid JSON: {e}")
        return 0
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            problem(f"dashboard: no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem("dashboard: no `datasource` variable of Prometheus data sources")
    if "instance" not in variables:
        problem("dashboard: no `instance` variable")
    for name, var in variables.items():
        if var.get("type") != "query":
            continue
        if (var.get("datasource") or {}).get("uid") != "${datasource}":
            problem(f"dashboard variable {name}: datasource is not ${{datasource}}")
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\)\s*", query or "")
        if not m:
            problem(f"dashboard variable {name}: expected label_values(selector, label), got {query!r}")
            continue
        check_expr(f"dashboard variable {name}", m.group(1), metrics, all_labels)
        selectors, _ = promql_uses(m.group(1))
        for metric, _ in selectors:
            if metric in metrics and m.group(2) not in metrics[metric] | TARGET_LABELS:
                problem(f"dashboard variable {name}: {metric} has no label {m.group(2)}")

    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))  # panels of a collapsed row
    ids = [p.get("id") for p in panels]
    if any(not isinstance(i, int) for i in ids):
        problem("dashboard: a panel without an integer id")
    if len(ids) != len(set(ids)):
        problem("dashboard: panel ids repeat")
    taken = {}
    for p in dash.get("panels", []):
        g = p.get("gridPos") or {}
        if not all(k in g for k in ("x", "y", "w", "h")):
            problem(f"dashboard panel {p.get('title')}: no gridPos")
            continue
        if g["x"] + g["w"] > 24:
            problem(f"dashboard panel {p.get('title')}: wider than the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in taken:
                    problem(f"dashboard panel {p.get('title')}: overlaps {taken[(x, y)]}")
                    break
                taken[(x, y)] = p.get("title")
            else:
                continue
            break
    count = 0
    for p in panels:
        if p.get("type") == "row":
            continue
        count += 1
        title = p.get("title") or f"#{p.get('id')}"
        where = f"dashboard panel {title!r}"
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problem(f"{where}: datasource is not ${{datasource}}")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problem(f"{where}: no unit")
        targets = p.get("targets") or []
        if not targets:
            problem(f"{where}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)) or not all(refs):
            problem(f"{where}: refIds missing or repeated")
        for t in targets:
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                problem(f"{where} target {t.get('refId')}: datasource is not ${{datasource}}")
            if not t.get("expr"):
                problem(f"{where} target {t.get('refId')}: no expr")
                continue
            check_expr(f"{where} target {t.get('refId')}", t["expr"], metrics, all_labels, need_instance=True)
    return count


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    metrics = exposed_metrics(root)
    all_labels = set().union(*metrics.values()) | TARGET_LABELS
    alerts = check_alerts(root, metrics, all_labels)
    groups, cases = check_tests(root, alerts)
    panels = check_dashboard(root, metrics, all_labels)
    for p in problems:
        print(f"FAIL {p}")
    print(f"[alerts] {len(alerts)} alerts, {groups} test groups ({cases} evaluations), "
          f"{panels} dashboard panels, {len(metrics)} exposed series names")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
