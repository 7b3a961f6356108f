#!/usr/bin/env bash
# A test's own PostgreSQL or Kafka, apart from the developer's stack, so a
# test that stops, pauses or kills a server never touches the one `just run`
# serves from. The tests' harness (tests/src/servers.rs) drives it.
#
#   instance.sh pg-start DIR PORT [CERTS]    init (once, durable: fsync and synchronous
#                                            commit on) and start; creates inventory_db;
#                                            with CERTS (server.crt, server.key), TLS only
#   instance.sh pg-stop DIR fast|immediate   stop
#   instance.sh pg-remove DIR                stop and delete
#   instance.sh kafka-start DIR PORT CPORT   format (once) and start a KRaft broker
#   instance.sh kafka-stop DIR               stop (SIGTERM, then SIGKILL)
#   instance.sh kafka-remove DIR             stop and delete
#   instance.sh free-port FROM               a free loopback port from FROM on
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_TAG=instance
# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

cmd="${1:-}"; shift || true
case "$cmd" in
  pg-start)
    pg_install
    # Tests crash it on purpose: durable, unlike the development stack.
    PG_DURABLE=1 pg_init "$1"
    if [ -n "${3:-}" ]; then pg_tls "$1" "$3"; fi
    pg_running "$1" || pg_start "$1" "$2"
    pg_create_db "$2" inventory_db
    ;;
  pg-stop) pg_running "$1" && pg_stop "$1" "${2:-fast}" || true ;;
  pg-remove)
    if [ -f "$1/PG_VERSION" ] && pg_running "$1"; then pg_stop "$1" immediate || true; fi
    [ -L "$1" ] && rm -rf "$(readlink "$1")"
    rm -rf "$1"
    ;;
  kafka-start)
    kafka_assemble
    kafka_pid "$1" >/dev/null || kafka_start "$1" "$2" "$3"
    ;;
  kafka-stop) kafka_stop "$1" ;;
  kafka-remove) kafka_stop "$1"; rm -rf "$1" ;;
  free-port) free_port "$1" "${2:-}" ;;
  *) die "usage: instance.sh pg-start|pg-stop|pg-remove|kafka-start|kafka-stop|kafka-remove|free-port ..." ;;
esac
