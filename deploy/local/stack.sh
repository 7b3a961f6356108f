#!/usr/bin/env bash
# Local PostgreSQL and Apache Kafka for development and tests, on loopback.
#
#   stack.sh up      install what is missing, start both, create inventory_db,
#                    write .local/stack.env (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS)
#   stack.sh down    stop both (data is kept)
#   stack.sh reset   stop both and delete their data
#   stack.sh status  say what runs
#
# A server given by environment is used instead of a local one: with
# DATABASE_URL set, no PostgreSQL is installed or started; with
# KAFKA_BOOTSTRAP_SERVERS set, no Kafka. Ports: PG_PORT (55432),
# KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093); when one is taken by
# something else, the next free one is used and written to .local/stack.env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
PG_PORT="${PG_PORT:-55432}"
PG_DIR="$LOCAL/pg"
PG_DB="inventory_db"
PG_OS_USER="${PG_OS_USER:-inventory-pg}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_DIR="$LOCAL/kafka"
KAFKA_SRC="$ROOT/deploy/local/kafka"

log() { printf '[stack] %s\n' "$*" >&2; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from $1 on that nothing listens on.
free_port() {
  local port="$1" skip="${2:-}"
  while port_busy "$port" || [ "$port" = "$skip" ]; do
    port=$((port + 1))
    [ "$port" -lt $(( $1 + 100 )) ] || die "no free port from $1 on"
  done
  echo "$port"
}
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "missing $*; install it (apt-get install $*) or run as root"
  if [ ! -f "$LOCAL/.apt-updated" ]; then
    apt-get update -qq >&2
    mkdir -p "$LOCAL" && touch "$LOCAL/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  return 1
}

# Runs a PostgreSQL tool as the cluster's owner: initdb refuses root.
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

pg_up() {
  if ! pg_bin >/dev/null; then
    log "installing PostgreSQL from Debian packages"
    apt_install postgresql postgresql-contrib
  fi
  local bin; bin="$(pg_bin)"
  if [ "$(id -u)" = 0 ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  mkdir -p "$LOCAL"
  if [ ! -f "$PG_DIR/PG_VERSION" ]; then
    log "initialising a PostgreSQL cluster in $PG_DIR"
    if [ "$(id -u)" = 0 ]; then
      chmod o+x "$LOCAL"
      if ! runuser -u "$PG_OS_USER" -- test -x "$LOCAL"; then
        # A parent folder (e.g. /root) is closed to the cluster's owner: keep
        # the data outside and link it here.
        local real
        real="/var/tmp/inventory-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)"
        rm -rf "$real" "$PG_DIR"
        mkdir -p "$real"
        ln -s "$real" "$PG_DIR"
      fi
      mkdir -p "$PG_DIR"
      chown "$PG_OS_USER" "$PG_DIR/" && chmod 700 "$PG_DIR/"
    else
      mkdir -p "$PG_DIR"
    fi
    as_pg_owner "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$PG_DIR/postgresql.conf" <<EOF
# inventory local stack
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
# A development and test cluster: losing the last commits on a crash is fine.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  if as_pg_owner "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
    PG_PORT="$(sed -n 4p "$PG_DIR/postmaster.pid")"
    log "PostgreSQL already runs on 127.0.0.1:$PG_PORT"
  else
    PG_PORT="$(free_port "$PG_PORT")"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg_owner "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
      || { tail -20 "$PG_DIR/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "select 1 from pg_database where datname='$PG_DB'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "create database $PG_DB" >/dev/null
  fi
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

pg_down() {
  local bin
  bin="$(pg_bin)" || return 0
  if [ -f "$PG_DIR/PG_VERSION" ] && as_pg_owner "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_pg_owner "$bin/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null
  fi
}

kafka_pid() {
  [ -f "$KAFKA_DIR/broker.pid" ] || return 1
  local pid; pid="$(cat "$KAFKA_DIR/broker.pid")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

kafka_up() {
  command -v java >/dev/null || { log "installing Java"; apt_install openjdk-17-jre-headless; }
  command -v mvn >/dev/null || { log "installing Maven"; apt_install maven; }
  mkdir -p "$KAFKA_DIR"
  if [ ! -f "$KAFKA_DIR/libs/.complete" ] || [ "$KAFKA_SRC/pom.xml" -nt "$KAFKA_DIR/libs/.complete" ]; then
    log "assembling Apache Kafka from Maven Central into $KAFKA_DIR/libs"
    rm -rf "$KAFKA_DIR/libs"
    mvn -q -B -f "$KAFKA_SRC/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/libs" >&2
    touch "$KAFKA_DIR/libs/.complete"
  fi
  local cp="$KAFKA_DIR/libs/*"
  if kafka_pid >/dev/null; then
    KAFKA_PORT="$(sed -n 's#^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*#\1#p' "$KAFKA_DIR/server.properties")"
    log "Kafka already runs on 127.0.0.1:$KAFKA_PORT"
    # A test that paused it (SIGSTOP) and died before resuming it must not leave it hung.
    kill -CONT "$(kafka_pid)" 2>/dev/null || true
    KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
    return
  fi
  KAFKA_PORT="$(free_port "$KAFKA_PORT")"
  KAFKA_CONTROLLER_PORT="$(free_port "$KAFKA_CONTROLLER_PORT" "$KAFKA_PORT")"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
      -e "s#@DATA_DIR@#$KAFKA_DIR/data#g" "$KAFKA_SRC/server.properties.in" > "$KAFKA_DIR/server.properties"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    log "formatting KRaft storage in $KAFKA_DIR/data"
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -cp "$cp" -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null
  fi
  log "starting Kafka (KRaft, single node) on 127.0.0.1:$KAFKA_PORT"
  # A fresh log, so the start-up line below is this start's.
  rm -f "$KAFKA_DIR/broker.log"
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$cp" kafka.Kafka "$KAFKA_DIR/server.properties" > "$KAFKA_DIR/stdout.log" 2>&1 &
  echo $! > "$KAFKA_DIR/broker.pid"
  local i
  for i in $(seq 1 120); do
    if grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$KAFKA_DIR/broker.log" 2>/dev/null; then
      break
    fi
    kafka_pid >/dev/null || { tail -30 "$KAFKA_DIR/stdout.log" "$KAFKA_DIR/broker.log" >&2 || true; die "Kafka exited during start-up"; }
    sleep 0.5
  done
  grep -q "started" "$KAFKA_DIR/broker.log" 2>/dev/null || die "Kafka did not report start-up within 60 s; see $KAFKA_DIR/broker.log"
  KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
}

kafka_down() {
  local pid
  if pid="$(kafka_pid)"; then
    log "stopping Kafka"
    kill "$pid"
    local i
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$KAFKA_DIR/broker.pid"
}

write_env() {
  mkdir -p "$LOCAL"
  {
    echo "DATABASE_URL=$DATABASE_URL"
    echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
    echo "HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}"
  } > "$LOCAL/stack.env"
  log "PostgreSQL: $DATABASE_URL"
  log "Kafka:      $KAFKA_BOOTSTRAP_SERVERS"
  log "written to $LOCAL/stack.env"
}

case "${1:-up}" in
  up)
    if [ -n "${DATABASE_URL:-}" ]; then log "using DATABASE_URL from the environment"; else pg_up; fi
    if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then log "using KAFKA_BOOTSTRAP_SERVERS from the environment"; else kafka_up; fi
    write_env
    ;;
  down) kafka_down; pg_down ;;
  reset)
    kafka_down; pg_down
    [ -L "$PG_DIR" ] && rm -rf "$(readlink "$PG_DIR")"
    rm -rf "$PG_DIR" "$KAFKA_DIR/data" "$LOCAL/stack.env"
    log "local data deleted"
    ;;
  status)
    if kafka_pid >/dev/null; then echo "kafka: running (pid $(kafka_pid))"; else echo "kafka: stopped"; fi
    if bin="$(pg_bin)" && [ -f "$PG_DIR/PG_VERSION" ] && as_pg_owner "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
      echo "postgres: running on 127.0.0.1:$(sed -n 4p "$PG_DIR/postmaster.pid")"; else echo "postgres: stopped"; fi
    [ -f "$LOCAL/stack.env" ] && cat "$LOCAL/stack.env"
    true
    ;;
  *) die "usage: stack.sh up|down|reset|status" ;;
esac
