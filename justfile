# The inventory service. `just` lists the recipes.
#
# Quick start: `just run` (everything, then serve) and `just test` (everything, then every test).
# Servers given by environment (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS) are used instead of local ones.

set shell := ["bash", "-euo", "pipefail", "-c"]

stack := "deploy/local/stack.sh"

# List the recipes.
default:
    @just --list

# Install (if missing) and start local PostgreSQL and Kafka; write .local/stack.env.
stack-up:
    bash {{stack}} up

# Stop the local servers (data is kept).
stack-down:
    bash {{stack}} down

# Stop the local servers and delete their data.
stack-reset:
    bash {{stack}} reset

# Say which local servers run.
stack-status:
    bash {{stack}} status

# Start what is needed, migrate, and serve (release build). Environment variables reach the service.
run: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    export JWT_SECRET="${JWT_SECRET:-$(just --quiet _dev-secret)}"
    cargo build --release -p inventory-app
    ./target/release/inventory-app migrate
    echo "[run] HTTP API on http://${HTTP_ADDR}  (PostgreSQL and Kafka: see .local/stack.env; admin token: just token)"
    exec ./target/release/inventory-app serve

# Apply the database migrations (to DATABASE_URL, or the local cluster).
migrate: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    cargo run -q -p inventory-app -- migrate

# Start what is needed and run every test (unit, integration, end-to-end, then the Java interop suite).
test: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    # The chaos tests start the fault-injection cluster (three brokers, two PostgreSQL nodes and a
    # monitor) when it is not running; what the tests started is stopped after them (its data is kept).
    cluster_was_up=$(bash deploy/local/cluster.sh status 2>/dev/null | grep -c "running" || true)
    status=0
    cargo test --workspace --no-fail-fast || status=$?
    if [ "$cluster_was_up" = 0 ]; then bash deploy/local/cluster.sh down >/dev/null 2>&1 || true; fi
    [ "$status" = 0 ] || exit "$status"
    just test-interop

# The neighbours' own libraries (kafka-clients, Spring Kafka, CloudEvents) against the real service.
test-interop: stack-up
    cargo build -p inventory-app
    bash tests/interop-java/run.sh target/debug/inventory-app

# The broker soak's long form: 15 pauses of 1-45 s and 3 SIGKILLs of a broker of its own
# (`SOAK_SEED=<n> just soak` replays a run).
soak: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    SOAK_PAUSES="${SOAK_PAUSES:-15}" SOAK_MAX_PAUSE_S="${SOAK_MAX_PAUSE_S:-45}" SOAK_KILLS="${SOAK_KILLS:-3}" \
      SOAK_LIMIT_S="${SOAK_LIMIT_S:-3600}" cargo test -p inventory-tests --test soak -- --nocapture

# The soak's short form (4 pauses of up to 12 s, 1 SIGKILL; about 100 s; also part of `just test`).
soak-short: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    cargo test -p inventory-tests --test soak -- --nocapture

# Build the container image inventory-service:dev (and :<git sha>) from a release build, with buildah.
image:
    cargo build --release -p inventory-app
    bash deploy/image/build.sh

# Build the image, then check it: lint, user 10001, entrypoint, runs on a read-only root, no tools or secrets, under 100 MB.
image-test: image
    bash deploy/image/test.sh

# Validate the Helm chart and the compose file (installs helm and the Python tools when missing),
# and that the README's configuration table matches what the application reads.
deploy-check:
    python3 deploy/check-config-docs.py
    bash deploy/helm/check.sh

# Check the alert rules (promtool check + unit tests) and the dashboard (installs promtool when missing).
alerts-check:
    bash deploy/prometheus/check.sh

# Formatting, lints and the dependency-direction check.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    bash deploy/check-domain-deps.sh

# Print a development bearer token (roles: ADMIN, SYSTEM; repeat --role for more).
token role="ADMIN" sub="dev-admin":
    #!/usr/bin/env bash
    set -euo pipefail
    JWT_SECRET="${JWT_SECRET:-$(just --quiet _dev-secret)}" cargo run -q -p inventory-app -- token --role {{role}} --sub {{sub}}

# Publish sample orders to the running service (start it with `just run`) and show the outcome events.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    cargo run -q --release -p inventory-app -- demo

# The development JWT secret, made once under .local/.
_dev-secret:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p .local
    [ -s .local/dev-jwt-secret ] || head -c 32 /dev/urandom | base64 | tr -d '\n' > .local/dev-jwt-secret
    cat .local/dev-jwt-secret

# Measure the service against pgbench and wrk baselines on the same database (medians of BENCH_REPS runs),
# in two profiles: `durable` (a PostgreSQL cluster of the benchmark's own with fsync, synchronous_commit and
# full_page_writes on) and `fast` (the development stack, all three off). BENCH_PROFILES picks them. Both use
# a Kafka broker created empty for the run.
bench: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    # The fault-injection cluster (four JVMs, three PostgreSQL servers) left running, e.g. by
    # `cargo test -p inventory-app`, takes CPU at random moments (a paced p99 of 52 ms with it, 37-38 without).
    cluster_up=$(bash deploy/local/cluster.sh status 2>/dev/null | grep -c "running" || true)
    if [ -z "${BENCH_ALLOW_CLUSTER:-}" ] && [ "$cluster_up" != 0 ]; then
      echo "[bench] the local cluster is running and would share the cores: stop it with 'just cluster-down' (or set BENCH_ALLOW_CLUSTER=1)" >&2
      exit 1
    fi
    command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
    command -v pgbench >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-contrib; }
    cargo build --release -p inventory-app -p inventory-tests --bin inventory-app --bin inventory-bench
    # A Kafka broker of the benchmark's own, created empty: the development broker keeps every topic
    # the tests and earlier runs made (thousands of partitions seen), and its heap then collects
    # garbage every few seconds under load, pausing for 12-25 ms each time.
    kdir="$PWD/.local/bench/kafka"
    bash deploy/local/instance.sh kafka-remove "$kdir"
    kport=$(bash deploy/local/instance.sh free-port 26700)
    kcport=$(bash deploy/local/instance.sh free-port $((kport + 1)))
    # Its JVM is the local brokers' (deploy/local/lib.sh), with a GC log the report reads (the broker's
    # pauses in each paced window). BENCH_KAFKA_JVM_OPTS replaces its options, for A/B runs: a 1 GB heap
    # was tried, and its rarer, longer pauses fell into every paced window (docs/performance.md, eleventh pass).
    export BENCH_KAFKA_GC_LOG="$PWD/.local/bench/kafka-gc.log"
    rm -f "$BENCH_KAFKA_GC_LOG"
    KAFKA_JVM_OPTS="${BENCH_KAFKA_JVM_OPTS:-}" KAFKA_JVM_EXTRA_OPTS="-Xlog:gc:file=$BENCH_KAFKA_GC_LOG:time" \
      bash deploy/local/instance.sh kafka-start "$kdir" "$kport" "$kcport"
    # The broker's log is kept (.local/bench/kafka-broker.log) to look into a slow run afterwards.
    cleanup() { cp "$kdir/broker.log" .local/bench/kafka-broker.log 2>/dev/null || true; bash deploy/local/instance.sh kafka-remove "$kdir"; }
    trap cleanup EXIT
    export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kport"
    for profile in ${BENCH_PROFILES:-durable fast}; do
      case "$profile" in
        durable)
          dir="$PWD/.local/bench/pg-durable"
          port=$(bash deploy/local/instance.sh free-port 26600)
          # Created for this run, with the settings deploy/local/lib.sh gives a new cluster.
          bash deploy/local/instance.sh pg-remove "$dir"
          bash deploy/local/instance.sh pg-start "$dir" "$port"
          trap 'bash deploy/local/instance.sh pg-stop "$dir" fast; cleanup' EXIT
          BENCH_PROFILE=durable DATABASE_URL="postgres://postgres@127.0.0.1:$port/inventory_db" ./target/release/inventory-bench
          bash deploy/local/instance.sh pg-stop "$dir" fast; trap cleanup EXIT
          ;;
        fast) BENCH_PROFILE=fast ./target/release/inventory-bench ;;
        *) echo "unknown profile $profile (durable, fast)" >&2; exit 2 ;;
      esac
    done

# One rep of the fast profile with `perf record` sampling the service in each phase; flat profiles in
# .local/bench/perf/<profile>-<phase>.txt, flame graphs in <phase>.svg (inferno; docs/performance.md reads them).
bench-profile:
    command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf; }
    command -v inferno-flamegraph >/dev/null || cargo install --locked inferno
    BENCH_PERF=1 BENCH_PROFILES="${BENCH_PROFILES:-fast}" BENCH_REPS=1 BENCH_GROWTH_PRODUCTS=0 just bench

# Fuzz the running API from its OpenAPI document with schemathesis (pip); no answer may be a 5xx.
fuzz-api: stack-up
    #!/usr/bin/env bash
    set -euo pipefail
    set -a; source .local/stack.env; set +a
    command -v st >/dev/null || pip install --quiet schemathesis
    export JWT_SECRET="${JWT_SECRET:-$(just --quiet _dev-secret)}"
    cargo build --release -p inventory-app
    # The development database may have been emptied (the benchmark resets it): migrate first.
    MIGRATE_ON_START=true HTTP_ADDR=127.0.0.1:18181 ./target/release/inventory-app serve & pid=$!
    trap 'kill $pid' EXIT
    for _ in $(seq 50); do curl -sf http://127.0.0.1:18181/health/live >/dev/null && break; sleep 0.2; done
    token="$(./target/release/inventory-app token --role ADMIN --role SYSTEM)"
    st run http://127.0.0.1:18181/api-docs/openapi.json -H "Authorization: Bearer $token" \
      --checks not_a_server_error --max-examples 200

# Install (if missing) and start the local fault-injection cluster (three Kafka brokers, PostgreSQL with failover); write .local/cluster.env.
cluster-up:
    bash deploy/local/cluster.sh up

# Stop the local fault-injection cluster (data is kept).
cluster-down:
    bash deploy/local/cluster.sh down

# Say what of the local fault-injection cluster runs and which PostgreSQL node is primary.
cluster-status:
    bash deploy/local/cluster.sh status

# Chaos, long form, against the local cluster: 5,000 orders over 7 minutes while service instances are
# SIGKILLed and SIGTERMed, brokers killed and paused and the PostgreSQL primary killed; then the invariant
# checker (CHAOS_SEED=<n> replays a plan; a bounded form is part of `just test`).
chaos: cluster-up
    CHAOS_LONG=1 cargo test -p inventory-app --test chaos -- --nocapture
