"""Checks of deploy/helm/check.sh that no off-the-shelf tool makes.

  check_deploy.py env-names REPO                   the variables the service reads, one a line
  check_deploy.py compose REPO COMPOSE_FILE        references, image tags and variables of the compose file
  check_deploy.py values-doc REPO VALUES_FILE      every key of values.yaml documented
  check_deploy.py manifests REPO RENDERED OUT_DIR
      image tags, env variables, hooks, KEDA's cap, the probes, secrets as
      files (every *_FILE / *_LOCATION path a file of a read-only volume the pod
      mounts, readable by uid 10001 and nobody else) and the NetworkPolicy's
      egress ports of rendered manifests; writes OUT_DIR/core.yaml (kinds
      kubernetes-validate has schemas for) and OUT_DIR/crd.yaml (ServiceMonitor,
      PrometheusRule, ScaledObject).
  check_deploy.py complete REPO RENDERED...
      every variable `serve` reads is set by one of the renders (the all-on
      values; NAME or NAME_FILE, and keys from JWKS or a fixed key, exclude each
      other, so they are spread over renders).

Exits 1 with one line per problem.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
MIN_GRACE_SECONDS = 70
SERVICE_UID = 10001
# Variables the service accepts under a prefix (settings.rs: KAFKA_PROPERTY_PREFIX;
# the OpenTelemetry SDK reads the standard OTEL_* variables).
KNOWN_PREFIXES = ("KAFKA_PROPERTY_", "OTEL_")
# Volumes whose files no variable names: the PostgreSQL TLS files are named in
# DATABASE_URL (sslrootcert, sslcert, sslkey), which is itself a secret.
NAMED_BY_DATABASE_URL = {"postgres-tls"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def service_env_names(repo: Path) -> set[str]:
    """Every variable the binary reads: clap's `env = "..."`, the OTEL_* of telemetry.rs, RUST_LOG."""
    src = repo / "crates" / "inventory-app" / "src"
    names: set[str] = {"RUST_LOG"}
    for path in sorted(src.glob("*.rs")):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        if path.name == "telemetry.rs":
            names.update(re.findall(r"\b(OTEL_[A-Z0-9_]+)\b", text))
    # The standard variables the OpenTelemetry SDK reads (issue: OTEL_* being added).
    names.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    })
    if "DATABASE_URL" not in names:
        raise SystemExit(f"no env = \"...\" attributes found under {src}: has settings.rs moved?")
    return names


def is_known(name: str, known: set[str]) -> bool:
    """A variable the service reads: one of `known`, or a pass-through prefix with a name after it."""
    return name in known or any(name.startswith(p) and len(name) > len(p) for p in KNOWN_PREFIXES)


def secret_env_names(repo: Path) -> set[str]:
    """Variables holding a secret: those with a NAME_FILE twin (settings.rs' load_secret)."""
    names = service_env_names(repo)
    return {n for n in names if f"{n}_FILE" in names}


def serve_env_names(repo: Path) -> set[str]:
    """Variables of `serve` (settings.rs and the global LOG_FORMAT), without the token tool's."""
    src = repo / "crates" / "inventory-app" / "src"
    names = set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', (src / "settings.rs").read_text(encoding="utf-8")))
    names.add("LOG_FORMAT")
    return names


def check_image(where: str, image: str | None) -> None:
    if not image:
        problem(f"{where}: no image")
        return
    if "@sha256:" in image:
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        problem(f"{where}: image {image!r} has no tag (that is `latest`)")
    elif last.rsplit(":", 1)[1] in ("latest", ""):
        problem(f"{where}: image {image!r} uses the tag `latest`")


# --- compose -----------------------------------------------------------------

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the environment empty: the defaults."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def check_compose(repo: Path, compose_file: Path) -> None:
    doc = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    services: dict = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    known_env = service_env_names(repo)
    base = compose_file.parent
    replicas = 0
    for name, svc in services.items():
        where = f"compose service {name}"
        check_image(where, interpolate(str(svc.get("image", ""))))
        depends = svc.get("depends_on") or {}
        for dep in depends if isinstance(depends, list) else depends.keys():
            if dep not in services:
                problem(f"{where}: depends_on {dep!r}, which is no service")
            elif "profiles" in services[dep] and "profiles" not in svc:
                problem(f"{where}: depends_on {dep!r}, which runs only in profile(s) {services[dep]['profiles']}")
        build = svc.get("build")
        if build:
            context = (base / (build if isinstance(build, str) else build.get("context", "."))).resolve()
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            if not dockerfile.is_file():
                problem(f"{where}: build file {dockerfile} does not exist")
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                path = (base / source).resolve() if source.startswith(".") else Path(source)
                if not path.exists():
                    problem(f"{where}: bind mount source {source} ({path}) does not exist")
            elif source and source not in volumes:
                problem(f"{where}: volume {source!r} is not declared under volumes:")
        image = str(svc.get("image", ""))
        if "inventory-service" in image and svc.get("command") in (["serve"], "serve"):
            replicas += int((svc.get("deploy") or {}).get("replicas", 1))
            names = set(compose_env(svc))
            for unknown in sorted(n for n in names if not is_known(n, known_env)):
                problem(f"{where}: sets {unknown}, which the service does not read")
            for missing in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "JWT_SECRET", "HTTP_ADDR", "OPS_ADDR"):
                if missing not in names and f"{missing}_FILE" not in names:
                    problem(f"{where}: does not set {missing} (or {missing}_FILE)")
            grace = str(svc.get("stop_grace_period", "10s"))
            seconds = int(re.sub(r"s$", "", grace)) if re.fullmatch(r"\d+s?", grace) else 0
            if seconds < MIN_GRACE_SECONDS:
                problem(f"{where}: stop_grace_period {grace} is shorter than the drain ({MIN_GRACE_SECONDS} s)")
        if "inventory-service" in image:
            check_compose_secrets(where, svc, doc.get("secrets") or {}, base, secret_env_names(repo))
    if replicas < 2:
        problem(f"compose: {replicas} replica(s) of the service; two are wanted")
    for name, secret in (doc.get("secrets") or {}).items():
        if "file" in secret:
            path = (base / interpolate(str(secret["file"]))).resolve()
            if not path.is_file():
                problem(f"compose secret {name}: file {secret['file']} ({path}) does not exist")


def compose_env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict((e.split("=", 1) + [""])[:2] for e in env)


def check_compose_secrets(where: str, svc: dict, secrets: dict, base: Path, secret_names: set[str]) -> None:
    """Secrets as files: no secret variable in the environment; each NAME_FILE is /run/secrets/<a secret it has>."""
    env = compose_env(svc)
    granted = {s if isinstance(s, str) else s.get("target") or s["source"]: s if isinstance(s, str) else s["source"]
               for s in svc.get("secrets") or []}
    for name in sorted(secret_names & env.keys()):
        problem(f"{where}: {name} is an environment value; use {name}_FILE and a compose secret")
    for name, value in sorted(env.items()):
        if not name.endswith("_FILE") or name.removesuffix("_FILE") not in secret_names:
            continue
        target = value.removeprefix("/run/secrets/")
        if not value.startswith("/run/secrets/") or target not in granted:
            problem(f"{where}: {name}={value} is not /run/secrets/<one of its secrets {sorted(granted)}>")
        elif granted[target] not in secrets:
            problem(f"{where}: secret {granted[target]!r} is not declared under the top-level secrets:")


# --- rendered manifests ----------------------------------------------------------


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def volume_files(volume: dict) -> dict[str, tuple[int, str]] | None:
    """The files of a secret, configMap or projected volume: path -> (mode, source); None when not listed by items."""
    default = volume.get("defaultMode", 0o644)
    if "projected" in volume:
        default = volume["projected"].get("defaultMode", 0o644)
        sources = volume["projected"].get("sources") or []
    elif "secret" in volume:
        default = volume["secret"].get("defaultMode", 0o644)
        sources = [{"secret": {**volume["secret"], "name": volume["secret"].get("secretName")}}]
    elif "configMap" in volume:
        default = volume["configMap"].get("defaultMode", 0o644)
        sources = [{"configMap": volume["configMap"]}]
    else:
        return None
    files: dict[str, tuple[int, str]] = {}
    for source in sources:
        for kind in ("secret", "configMap"):
            if kind in source:
                if not source[kind].get("items"):
                    return None
                for item in source[kind]["items"]:
                    files[item["path"]] = (item.get("mode", default), f"{kind} {source[kind].get('name')} key {item['key']}")
    return files


def check_secret_files(where: str, spec: dict, configmaps: list[dict]) -> None:
    """Secrets as files: every *_FILE / *_LOCATION path is a file of a read-only mount of the pod,
    readable by uid 10001 (through fsGroup) and by nobody else when it comes from a Secret; every
    secret file mounted is named by a variable (PostgreSQL's by DATABASE_URL)."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    cm_data = {cm["metadata"]["name"]: cm.get("data") or {} for cm in configmaps}
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    named: set[tuple[str, str]] = set()
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if any("secretKeyRef" in (e.get("valueFrom") or {}) for e in c.get("env", [])) \
                or any("secretRef" in e for e in c.get("envFrom", [])):
            problem(f"{where} container {c['name']}: a Secret in the environment; mount it as files")
        for ref in c.get("envFrom", []):
            name = (ref.get("configMapRef") or {}).get("name")
            env = {**cm_data.get(name, {}), **env}
        mounts = c.get("volumeMounts") or []
        for name, value in sorted(env.items()):
            if not (name.endswith("_FILE") or name.endswith("_LOCATION")) or not value:
                continue
            twin = name.removesuffix("_FILE")
            if name.endswith("_FILE") and twin in env:
                problem(f"{where} container {c['name']}: sets both {twin} and {name}")
            mount = next((m for m in mounts if value.startswith(m["mountPath"].rstrip("/") + "/")), None)
            if mount is None:
                problem(f"{where} container {c['name']}: {name}={value} is in no mounted volume")
                continue
            relative = value[len(mount["mountPath"].rstrip("/")) + 1:]
            volume = volumes.get(mount["name"])
            files = volume_files(volume) if volume else None
            if not mount.get("readOnly"):
                problem(f"{where} container {c['name']}: the mount of {name} ({mount['mountPath']}) is not readOnly")
            if files is None:
                problem(f"{where}: volume {mount['name']} (of {name}) lists no items, so its files are unknown")
                continue
            if relative not in files:
                problem(f"{where} container {c['name']}: {name}={value}, but volume {mount['name']} at "
                        f"{mount['mountPath']} holds only {sorted(files)}")
                continue
            named.add((mount["name"], relative))
            mode, source = files[relative]
            readable = (fs_group == SERVICE_UID and mode & 0o040) or mode & 0o004
            if not readable:
                problem(f"{where}: {value} (mode {mode:04o}, fsGroup {fs_group}) is not readable by uid {SERVICE_UID}")
            if source.startswith("configMap"):
                cm, key = source.split(" ")[1], source.split(" key ")[1]
                if cm in cm_data and key not in cm_data[cm]:
                    problem(f"{where}: {value} is ConfigMap {cm} key {key}, which it does not have")
    for vname, volume in volumes.items():
        files = volume_files(volume)
        if files is None or vname in NAMED_BY_DATABASE_URL:
            continue
        for path, (mode, source) in sorted(files.items()):
            if (vname, path) not in named:
                problem(f"{where}: volume {vname} mounts {path} ({source}), but no variable names it")
            if source.startswith("secret") and mode & 0o027:
                problem(f"{where}: volume {vname} file {path} ({source}) has mode {mode:04o}: "
                        f"a secret is 0440 at most (root and group {SERVICE_UID})")


def url_port(url: str) -> int | None:
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]+)", url)
    if not match:
        return None
    port = re.search(r":(\d+)$", match.group(2))
    return int(port.group(1)) if port else (443 if match.group(1).lower() == "https" else 80)


def check_egress(policy: dict, config: dict[str, str]) -> None:
    """Every endpoint the configuration names can be reached through the NetworkPolicy's egress."""
    allowed: set[int] = set()
    for rule in policy["spec"].get("egress") or []:
        if not rule.get("ports"):
            return  # a rule without ports allows every port
        allowed.update(p["port"] for p in rule["ports"] if isinstance(p.get("port"), int))
    wanted: dict[str, set[int]] = {"DNS": {53}}
    servers = [s.strip() for s in config.get("KAFKA_BOOTSTRAP_SERVERS", "").split(",") if s.strip()]
    wanted["KAFKA_BOOTSTRAP_SERVERS"] = {int(m.group(1)) if (m := re.search(r":(\d+)$", s)) else 9092 for s in servers}
    if config.get("JWT_JWKS_URL"):
        wanted["JWT_JWKS_URL"] = {url_port(config["JWT_JWKS_URL"])}
    elif config.get("JWT_OIDC_DISCOVERY", "").lower() == "true":
        wanted["JWT_ISSUER (OIDC discovery)"] = {url_port(config.get("JWT_ISSUER", ""))}
    if config.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        wanted["OTEL_EXPORTER_OTLP_ENDPOINT"] = {url_port(config["OTEL_EXPORTER_OTLP_ENDPOINT"])}
    for what, ports in wanted.items():
        for port in sorted(p for p in ports if p not in allowed):
            problem(f"NetworkPolicy: egress to port {port} ({what}) is not allowed (allowed: {sorted(allowed)})")


def check_complete(repo: Path, renders: list[Path]) -> None:
    """Every variable `serve` reads is set by one of the renders; NAME counts as set when NAME_FILE is."""
    set_env: set[str] = set()
    for rendered in renders:
        docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
        env_from: set[str] = set()
        for d in docs:
            for c in (pod_spec(d) or {}).get("containers", []):
                set_env.update(e["name"] for e in c.get("env", []))
                env_from.update((ref.get("configMapRef") or {}).get("name") for ref in c.get("envFrom", []))
        for d in docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] in env_from:
                set_env.update((d.get("data") or {}).keys())
    set_env.update(n.removesuffix("_FILE") for n in list(set_env) if n.endswith("_FILE"))
    for missing in sorted(serve_env_names(repo) - set_env):
        problem(f"the all-on values leave {missing} unset: add it to ci-values.yaml (or the chart)")


def check_manifests(repo: Path, rendered: Path, out_dir: Path) -> None:
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    crd = [d for d in docs if d["kind"] in CRD_KINDS]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False), encoding="utf-8")
    (out_dir / "crd.yaml").write_text(yaml.safe_dump_all(crd, sort_keys=False), encoding="utf-8")

    known_env = service_env_names(repo)
    set_env: set[str] = set()
    config = {}
    env_from = {(ref.get("configMapRef") or {}).get("name") for d in docs for c in (pod_spec(d) or {}).get("containers", [])
                for ref in c.get("envFrom", [])}
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"] in env_from:  # not the kafka.properties file's
            config.update(cm.get("data") or {})
            set_env.update((cm.get("data") or {}).keys())
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        where = f"{d['kind']} {d['metadata']['name']}"
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            check_image(f"{where} container {c['name']}", c.get("image"))
            set_env.update(e["name"] for e in c.get("env", []))
            sc = c.get("securityContext") or {}
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("runAsNonRoot") and sc.get("runAsUser") == 10001
                    and "ALL" in (sc.get("capabilities") or {}).get("drop", [])):
                problem(f"{where} container {c['name']}: securityContext is not the hardened one")
        if spec.get("automountServiceAccountToken") is not False:
            problem(f"{where}: mounts a service account token")
        if (spec.get("securityContext") or {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(f"{where}: pod seccompProfile is not RuntimeDefault")

    for unknown in sorted(n for n in set_env if not is_known(n, known_env)):
        problem(f"the chart sets {unknown}, which the service does not read")
    for name in sorted(secret_env_names(repo) & set_env):
        problem(f"the chart sets {name} as an environment value: secrets are mounted files ({name}_FILE)")
    for d in docs:
        spec = pod_spec(d)
        if spec is not None:
            check_secret_files(f"{d['kind']} {d['metadata']['name']}", spec, by_kind.get("ConfigMap", []))
    for policy in by_kind.get("NetworkPolicy", []):
        check_egress(policy, config)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problem(f"{len(deployments)} Deployments rendered; one expected")
    for dep in deployments:
        spec = pod_spec(dep)
        if spec.get("terminationGracePeriodSeconds", 30) < MIN_GRACE_SECONDS:
            problem("Deployment: terminationGracePeriodSeconds is shorter than the drain")
        container = spec["containers"][0]
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                            ("startupProbe", "/health/live")):
            got = (container.get(probe) or {}).get("httpGet", {}).get("path")
            if got != path:
                problem(f"Deployment: {probe} checks {got!r}, not {path}")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if set(ports) != {"http", "ops"}:
            problem(f"Deployment: container ports {ports}; http and ops expected")
        for key, port in (("HTTP_ADDR", ports.get("http")), ("OPS_ADDR", ports.get("ops"))):
            if config.get(key) != f"0.0.0.0:{port}":
                problem(f"ConfigMap {key}={config.get(key)!r} does not match the container port {port}")

    jobs = by_kind.get("Job", [])
    for job in jobs:
        ann = job["metadata"].get("annotations") or {}
        hooks = set((ann.get("helm.sh/hook") or "").split(","))
        if not {"pre-install", "pre-upgrade"} <= hooks or "helm.sh/hook-delete-policy" not in ann:
            problem(f"Job {job['metadata']['name']}: not a pre-install,pre-upgrade hook with a delete policy")
        component = job["metadata"]["labels"].get("app.kubernetes.io/component")
        args = pod_spec(job)["containers"][0].get("args")
        if component == "migration" and args != ["migrate"]:
            problem(f"Job {job['metadata']['name']}: args {args}, not [migrate]")
        if component == "topics":
            script = "".join(args or [])
            for topic in ("KAFKA_ORDER_TOPIC", "KAFKA_PAYMENT_TOPIC", "KAFKA_INVENTORY_TOPIC"):
                if config.get(topic) and config[topic] not in script:
                    problem(f"Job {job['metadata']['name']}: does not create {config[topic]}")
            for dlt in ("KAFKA_ORDER_TOPIC", "KAFKA_PAYMENT_TOPIC"):
                if config.get(dlt) and f"{config[dlt]}.DLT" not in script:
                    problem(f"Job {job['metadata']['name']}: does not create {config[dlt]}.DLT")
    if not any(j["metadata"]["labels"].get("app.kubernetes.io/component") == "migration" for j in jobs):
        problem("no migration Job rendered")

    # The CRD kinds have no bundled schema: check what ties them to the rest.
    deployment_names = {d["metadata"]["name"] for d in deployments}
    services = by_kind.get("Service", [])
    for so in by_kind.get("ScaledObject", []):
        spec = so["spec"]
        partitions = int(config.get("KAFKA_TOPIC_PARTITIONS", "3"))
        top = spec["maxReplicaCount"]
        if top > partitions:
            problem(f"ScaledObject: maxReplicaCount {top} exceeds the {partitions} partitions")
        if not 1 <= spec.get("minReplicaCount", 0) <= top:
            problem(f"ScaledObject: minReplicaCount {spec.get('minReplicaCount')} not within 1..{top}")
        if spec["scaleTargetRef"].get("name") not in deployment_names:
            problem(f"ScaledObject: scaleTargetRef {spec['scaleTargetRef']} is not the Deployment")
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata") or {}
            if trigger.get("type") == "prometheus" and "inventory_consumer_lag" not in meta.get("query", ""):
                problem("ScaledObject: the prometheus trigger does not query inventory_consumer_lag")
            if trigger.get("type") == "kafka" and meta.get("consumerGroup") != config.get("KAFKA_GROUP_ID"):
                problem("ScaledObject: the kafka trigger's consumerGroup is not KAFKA_GROUP_ID")
            if any(not isinstance(v, str) for v in meta.values()):
                problem(f"ScaledObject: trigger metadata values must be strings: {meta}")
    for sm in by_kind.get("ServiceMonitor", []):
        wanted = sm["spec"]["selector"]["matchLabels"]
        matching = [s for s in services
                    if wanted.items() <= (s["metadata"].get("labels") or {}).items()]
        if not matching:
            problem("ServiceMonitor: its selector matches no Service")
        for endpoint in sm["spec"]["endpoints"]:
            for s in matching:
                if endpoint.get("port") not in {p["name"] for p in s["spec"]["ports"]}:
                    problem(f"ServiceMonitor: port {endpoint.get('port')!r} is not a port of Service {s['metadata']['name']}")
    for rule in by_kind.get("PrometheusRule", []):
        groups = rule["spec"].get("groups") or []
        if not groups or any(not g.get("name") or not g.get("rules") for g in groups):
            problem("PrometheusRule: groups must each have a name and rules")
        for g in groups:
            for r in g.get("rules") or []:
                if not (r.get("alert") or r.get("record")) or not r.get("expr"):
                    problem(f"PrometheusRule group {g.get('name')}: a rule without alert/record or expr: {r}")
    if by_kind.get("ScaledObject") and by_kind.get("HorizontalPodAutoscaler"):
        problem("both a ScaledObject and an HPA: KEDA creates its own HPA")
    for sa in by_kind.get("ServiceAccount", []):
        if sa.get("automountServiceAccountToken") is not False:
            problem(f"ServiceAccount {sa['metadata']['name']}: automountServiceAccountToken is not false")


def check_values_doc(values: Path) -> None:
    """Every key of values.yaml has a comment right above it, or sits under a key that has one."""
    documented: list[tuple[int, bool]] = []  # (indent, has comment) of the enclosing keys
    previous = ""
    for number, line in enumerate(values.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):", line)
        if match and not stripped.startswith("-"):
            indent = len(match.group(1))
            while documented and documented[-1][0] >= indent:
                documented.pop()
            has_comment = previous.startswith("#")
            if not has_comment and not any(d for _, d in documented):
                # A group (its value on the next lines) may go without; a leaf may not.
                if re.match(r"^ *[\w.-]+:\s*\S", line) and not re.match(r"^ *[\w.-]+:\s*#", line):
                    problem(f"values.yaml:{number}: key {match.group(2)!r} has no comment")
            documented.append((indent, has_comment))
        previous = stripped


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    command, repo = argv[1], Path(argv[2])
    if command == "env-names":
        print("\n".join(sorted(service_env_names(repo))))
        return 0
    if command == "compose":
        check_compose(repo, Path(argv[3]))
    elif command == "values-doc":
        check_values_doc(Path(argv[3]))
    elif command == "manifests":
        check_manifests(repo, Path(argv[3]), Path(argv[4]))
    elif command == "complete":
        check_complete(repo, [Path(a) for a in argv[3:]])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(f"  - {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
