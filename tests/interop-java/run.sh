#!/usr/bin/env bash
# Runs the Java interop suite against the real service.
#
#   tests/interop-java/run.sh SERVICE_BINARY        (`just test-interop` builds it and calls this)
#
# PostgreSQL and Kafka must already run (`just stack-up`; .local/stack.env says where). The service
# gets a schema, topics and a consumer group of its own, so a run never sees another's data and
# leaves nothing in the database; then `mvn test` runs here and its status is this script's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
say() { echo "[interop] $*" >&2; }

[ $# -eq 1 ] || { say "usage: $0 SERVICE_BINARY"; exit 2; }
BIN="$(realpath "$1")"
[ -x "$BIN" ] || { say "$1 is not an executable"; exit 2; }
[ -f "$ROOT/.local/stack.env" ] || { say "no .local/stack.env: start PostgreSQL and Kafka with \`just stack-up\`"; exit 2; }
set -a
# shellcheck source=/dev/null
. "$ROOT/.local/stack.env"
set +a
: "${DATABASE_URL:?not set by .local/stack.env}" "${KAFKA_BOOTSTRAP_SERVERS:?not set by .local/stack.env}"

rand="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
schema="interop_$rand"
logs="$ROOT/.local/interop"
mkdir -p "$logs"
log="$logs/$schema.log"

# A port nothing listens on, below Linux's ephemeral range so no outgoing connection takes it meanwhile.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  say "no free port found"
  return 1
}

pid=""
cleanup() {
  local status=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "the service did not stop within 30 s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  psql "$DATABASE_URL" -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 \
    || say "could not drop schema $schema"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $schema" >/dev/null
case "$DATABASE_URL" in *\?*) sep='&' ;; *) sep='?' ;; esac
service_db="${DATABASE_URL}${sep}options=-c%20search_path%3D${schema}"
if ! DATABASE_URL="$service_db" "$BIN" migrate >>"$log" 2>&1; then
  tail -n 40 "$log" >&2
  say "migrate failed (log: $log)"
  exit 1
fi

order_topic="interop-$rand.order-events"
payment_topic="interop-$rand.payment-events"
inventory_topic="interop-$rand.inventory-events"
http_addr="127.0.0.1:$(free_port)"
jwt_secret="$(head -c 36 /dev/urandom | base64 | tr -d '\n')"

DATABASE_URL="$service_db" \
KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
KAFKA_ORDER_TOPIC="$order_topic" \
KAFKA_PAYMENT_TOPIC="$payment_topic" \
KAFKA_INVENTORY_TOPIC="$inventory_topic" \
KAFKA_GROUP_ID="interop-$rand.inventory-service" \
HTTP_ADDR="$http_addr" \
JWT_SECRET="$jwt_secret" \
RUST_LOG=warn \
EVENT_TYPE_ALIASES="com.shop.order.created=OrderCreatedEvent,orderCreated=OrderCreatedEvent,com.shop.order.cancelled=OrderCancelledEvent,orderCancelled=OrderCancelledEvent,com.shop.payment.failed=PaymentFailedEvent,com.shop.payment.succeeded=PaymentSucceededEvent" \
  "$BIN" serve >>"$log" 2>&1 &
pid=$!
say "service pid $pid on http://$http_addr, topics interop-$rand.*, schema $schema (log: $log)"

ready_by=$((SECONDS + 90))
until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$http_addr/health/ready" || true)" = 200 ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 40 "$log" >&2
    say "the service exited before it was ready"
    exit 1
  fi
  if [ "$SECONDS" -ge "$ready_by" ]; then
    tail -n 40 "$log" >&2
    say "the service was not ready within 90 s"
    exit 1
  fi
  sleep 0.5
done

admin_token="$(JWT_SECRET="$jwt_secret" "$BIN" token --role ADMIN --sub interop)"

status=0
KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
INVENTORY_URL="http://$http_addr" \
ADMIN_TOKEN="$admin_token" \
ORDER_TOPIC="$order_topic" \
PAYMENT_TOPIC="$payment_topic" \
INVENTORY_TOPIC="$inventory_topic" \
  mvn -q -B -f "$HERE/pom.xml" test || status=$?
if [ "$status" -ne 0 ]; then
  say "the Java suite failed (mvn exit $status); the service's log ends with:"
  tail -n 40 "$log" >&2
fi
exit "$status"
