#!/usr/bin/env bash
# Runs the Java interop suite against the real service: starts SERVICE_BINARY
# on the local stack (PostgreSQL and Kafka must run: `just stack-up`), in a
# schema and on topics of its own, waits until it is ready, runs
# `mvn test` here with where to find it, then stops it and drops the schema.
#
#   tests/interop-java/run.sh target/debug/inventory-app
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(realpath "${1:?usage: run.sh SERVICE_BINARY}")"
[ -x "$BIN" ] || { echo "[interop] $BIN is not an executable" >&2; exit 2; }
[ -f "$ROOT/.local/stack.env" ] || { echo "[interop] no .local/stack.env: run \`just stack-up\` (or \`just test-interop\`)" >&2; exit 2; }
set -a; . "$ROOT/.local/stack.env"; set +a

run_id="interop_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
logs="$ROOT/.local/interop"; mkdir -p "$logs"
log="$logs/$run_id.log"
psql "$DATABASE_URL" -qc "CREATE SCHEMA $run_id" >/dev/null
sep='?'; case "$DATABASE_URL" in *\?*) sep='&';; esac
db_url="${DATABASE_URL}${sep}options=-c%20search_path%3D${run_id}"

port="$(bash "$ROOT/deploy/local/instance.sh" free-port 18500)"
secret="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $run_id CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

DATABASE_URL="$db_url" "$BIN" migrate >/dev/null
export KAFKA_ORDER_TOPIC="$run_id.order-events" KAFKA_PAYMENT_TOPIC="$run_id.payment-events"
export KAFKA_INVENTORY_TOPIC="$run_id.inventory-events" KAFKA_GROUP_ID="$run_id.inventory-service"
DATABASE_URL="$db_url" HTTP_ADDR="127.0.0.1:$port" JWT_SECRET="$secret" RUST_LOG="${RUST_LOG:-warn}" \
  EVENT_TYPE_ALIASES="com.shop.order.created=OrderCreatedEvent,orderCreated=OrderCreatedEvent,com.shop.order.cancelled=OrderCancelledEvent,orderCancelled=OrderCancelledEvent,com.shop.payment.failed=PaymentFailedEvent,com.shop.payment.succeeded=PaymentSucceededEvent" \
  "$BIN" serve >"$log" 2>&1 &
pid=$!

echo "[interop] service on 127.0.0.1:$port (log: $log)"
for i in $(seq 1 180); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready" || true)" = 200 ]; then break; fi
  kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; echo "[interop] the service exited" >&2; exit 1; }
  [ "$i" -lt 180 ] || { tail -30 "$log" >&2; echo "[interop] not ready within 90 s" >&2; exit 1; }
  sleep 0.5
done

token="$(JWT_SECRET="$secret" "$BIN" token --role ADMIN --sub interop)"
status=0
INVENTORY_URL="http://127.0.0.1:$port" ADMIN_TOKEN="$token" \
  ORDER_TOPIC="$KAFKA_ORDER_TOPIC" PAYMENT_TOPIC="$KAFKA_PAYMENT_TOPIC" INVENTORY_TOPIC="$KAFKA_INVENTORY_TOPIC" \
  mvn -q -B -f "$HERE/pom.xml" test || status=$?
if [ "$status" -ne 0 ]; then
  echo "[interop] the Java suite failed; the service's log ends with:" >&2
  tail -30 "$log" >&2
fi
exit "$status"
