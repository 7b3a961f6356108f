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
# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"
PG_PORT="${PG_PORT:-55432}"
PG_DIR="$LOCAL/pg"
PG_DB="inventory_db"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_DIR="$LOCAL/kafka"

pg_up() {
  pg_install
  mkdir -p "$LOCAL"
  pg_init "$PG_DIR"
  if pg_running "$PG_DIR"; then
    PG_PORT="$(sed -n 4p "$PG_DIR/postmaster.pid")"
    log "PostgreSQL already runs on 127.0.0.1:$PG_PORT"
  else
    PG_PORT="$(free_port "$PG_PORT")"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    pg_start "$PG_DIR" "$PG_PORT"
  fi
  pg_create_db "$PG_PORT" "$PG_DB"
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

pg_down() {
  pg_bin >/dev/null || return 0
  if [ -f "$PG_DIR/PG_VERSION" ] && pg_running "$PG_DIR"; then
    log "stopping PostgreSQL"
    pg_stop "$PG_DIR" fast
  fi
}

kafka_up() {
  kafka_assemble
  if kafka_pid "$KAFKA_DIR" >/dev/null; then
    KAFKA_PORT="$(sed -n 's#^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*#\1#p' "$KAFKA_DIR/server.properties")"
    log "Kafka already runs on 127.0.0.1:$KAFKA_PORT"
    # A broker left paused (SIGSTOP) by anything must not stay hung.
    kill -CONT "$(kafka_pid "$KAFKA_DIR")" 2>/dev/null || true
    KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
    return
  fi
  KAFKA_PORT="$(free_port "$KAFKA_PORT")"
  KAFKA_CONTROLLER_PORT="$(free_port "$KAFKA_CONTROLLER_PORT" "$KAFKA_PORT")"
  kafka_start "$KAFKA_DIR" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
}

kafka_down() {
  if kafka_pid "$KAFKA_DIR" >/dev/null; then log "stopping Kafka"; fi
  kafka_stop "$KAFKA_DIR"
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
    if kafka_pid "$KAFKA_DIR" >/dev/null; then echo "kafka: running (pid $(kafka_pid "$KAFKA_DIR"))"; else echo "kafka: stopped"; fi
    if pg_bin >/dev/null && [ -f "$PG_DIR/PG_VERSION" ] && pg_running "$PG_DIR"; then
      echo "postgres: running on 127.0.0.1:$(sed -n 4p "$PG_DIR/postmaster.pid")"; else echo "postgres: stopped"; fi
    [ -f "$LOCAL/stack.env" ] && cat "$LOCAL/stack.env"
    true
    ;;
  *) die "usage: stack.sh up|down|reset|status" ;;
esac
