#!/usr/bin/env bash
# A local cluster for fault-injection (chaos) tests, beside the developer's stack (stack.sh):
# three Apache Kafka brokers (KRaft, each broker and controller, all three voters) and
# PostgreSQL 15 with automatic failover by pg_auto_failover (a monitor and two data nodes
# with a synchronous standby). Everything on 127.0.0.1, data under .local/cluster/.
#
#   cluster.sh up        install what is missing, start what does not run, wait until the
#                        formation has a primary and a secondary in sync and the three brokers
#                        are registered; write .local/cluster.env
#   cluster.sh down      stop all (data is kept)
#   cluster.sh reset     stop all and delete the data
#   cluster.sh status    what runs, which PostgreSQL node is primary, broker pids
#
# Faults (for the chaos harness; one line on stderr says what was done, exit 0 on success;
# stdout only where said):
#   broker-kill N        SIGKILL broker N (1..3)
#   broker-start N       start broker N again (no reformat), wait until it reports started
#   broker-pause N       SIGSTOP broker N
#   broker-resume N      SIGCONT broker N
#   broker-port N        stdout: broker N's port
#   pg-primary           stdout: the primary node's number (1 or 2); fails when there is none
#   pg-kill-primary      SIGKILL the primary's pg_autoctl keeper and its postgres (every
#                        process of both), so the monitor must fail over; stdout: its number
#   pg-wait-primary OLD  wait (90 s) until a node other than OLD is primary and writable;
#                        stdout: its number
#   pg-rejoin N          start node N's keeper again, wait (120 s) until it is secondary
#   pg-node-port N       stdout: node N's port
#   kafka-tool CLASS ARG...  run one of Kafka's command-line tools (e.g.
#                        org.apache.kafka.tools.TopicCommand --bootstrap-server ... --list)
#
# Ports (chosen on the first `up`, the next free one when taken, and kept in
# .local/cluster/ports): brokers 29092..29094 (CLUSTER_KAFKA_PORT), their controllers
# 29192..29194 (CLUSTER_KAFKA_CONTROLLER_PORT), the pg_auto_failover monitor 56432
# (CLUSTER_PG_PORT), the data nodes 56433 and 56434.
#
# Failover tuning (monitor GUCs; pg_auto_failover's defaults in brackets):
#   pgautofailover.health_check_period              1000 ms [5000]
#   pgautofailover.health_check_timeout             1000 ms [5000]
#   pgautofailover.health_check_max_retries         1       [2]
#   pgautofailover.health_check_retry_delay         500 ms  [2000]
#   pgautofailover.node_considered_unhealthy_timeout 3000 ms [20000]  (since the keeper's last report)
#   pgautofailover.primary_demote_timeout           5000 ms [30000]  (how long the monitor lets
#                                                   a lost primary demote itself before promoting)
#   pgautofailover.startup_grace_period             5000 ms [10000]
# and on each keeper ([timeout] of pg_autoctl.cfg): network_partition_timeout 4 s [20] (a
# primary that reaches neither monitor nor standby demotes itself; kept below
# primary_demote_timeout, so a partitioned primary stops before the standby is promoted),
# prepare_promotion_walreceiver 2 s [5]. Measured after a SIGKILL of the primary: the monitor
# notices in about 3.5 s (the primary is in demote_timeout), waits primary_demote_timeout, and
# the standby is primary and writable (wait_primary) 8 to 10 s after the kill; a killed node
# rejoins as secondary (pg_rewind) in 3 to 7 s. Writes fail for that whole time: connections
# to the killed primary are cut at once, and target_session_attrs=read-write finds no
# writable host until the promotion.
#
# PostgreSQL: durable (fsync, synchronous_commit, full_page_writes on), max_connections 300,
# trust on loopback, no TLS, superuser postgres, database inventory_db; both nodes take part
# in the replication quorum, so the primary has synchronous_standby_names set while its
# standby is in sync (pg_auto_failover clears it when the standby is lost: wait_primary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_TAG=cluster
# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

CLUSTER="$LOCAL/cluster"
PORTS_FILE="$CLUSTER/ports"
ENV_FILE="$LOCAL/cluster.env"
TOOLS="$CLUSTER/tools"
PG_BASE="$CLUSTER/pg"        # owned by the PostgreSQL user: the three data folders, pg_autoctl's files
PG_RUN="$CLUSTER/pg-run"     # ours: keepers' pid files and logs
PG_DB=inventory_db
FORMATION=default
BROKERS=(1 2 3)
NODES=(1 2)

# ---------------------------------------------------------------- ports

pick_port() { # VAR FROM: the first free port from FROM on that no other pick took
  local p="$2"
  while :; do
    p="$(free_port "$p")"
    case " $PICKED " in *" $p "*) p=$((p + 1)) ;; *) break ;; esac
  done
  PICKED="$PICKED $p"
  printf -v "$1" %s "$p"
}

load_ports() {
  if [ -f "$PORTS_FILE" ]; then
    # shellcheck source=/dev/null
    . "$PORTS_FILE"
    return 0
  fi
  [ "${1:-}" = choose ] || die "the cluster was never set up (no $PORTS_FILE): run cluster.sh up"
  PICKED=""
  local k="${CLUSTER_KAFKA_PORT:-29092}" c="${CLUSTER_KAFKA_CONTROLLER_PORT:-29192}" p="${CLUSTER_PG_PORT:-56432}"
  pick_port KAFKA_PORT_1 "$k"; pick_port KAFKA_PORT_2 $((k + 1)); pick_port KAFKA_PORT_3 $((k + 2))
  pick_port CONTROLLER_PORT_1 "$c"; pick_port CONTROLLER_PORT_2 $((c + 1)); pick_port CONTROLLER_PORT_3 $((c + 2))
  pick_port PG_MONITOR_PORT "$p"; pick_port PG_NODE_PORT_1 $((p + 1)); pick_port PG_NODE_PORT_2 $((p + 2))
  mkdir -p "$CLUSTER"
  local v
  for v in KAFKA_PORT_1 KAFKA_PORT_2 KAFKA_PORT_3 CONTROLLER_PORT_1 CONTROLLER_PORT_2 CONTROLLER_PORT_3 \
           PG_MONITOR_PORT PG_NODE_PORT_1 PG_NODE_PORT_2; do
    echo "$v=${!v}"
  done > "$PORTS_FILE"
}

kafka_port() { local v="KAFKA_PORT_$1"; echo "${!v}"; }
node_port() { local v="PG_NODE_PORT_$1"; echo "${!v}"; }

check_broker() { case "${1:-}" in 1|2|3) ;; *) die "broker number 1, 2 or 3 expected, got '${1:-}'" ;; esac; }
check_node() { case "${1:-}" in 1|2) ;; *) die "node number 1 or 2 expected, got '${1:-}'" ;; esac; }

# ---------------------------------------------------------------- Kafka

kdir() { echo "$CLUSTER/kafka-$1"; }

kafka_render() { # N
  local n="$1" dir voters=""
  dir="$(kdir "$n")"
  mkdir -p "$dir"
  voters="1@127.0.0.1:$CONTROLLER_PORT_1,2@127.0.0.1:$CONTROLLER_PORT_2,3@127.0.0.1:$CONTROLLER_PORT_3"
  local port cport
  port="$(kafka_port "$n")"; cport="CONTROLLER_PORT_$n"; cport="${!cport}"
  sed -e "s#@NODE_ID@#$n#g" -e "s#@VOTERS@#$voters#g" -e "s#@KAFKA_PORT@#$port#g" \
      -e "s#@CONTROLLER_PORT@#$cport#g" -e "s#@DATA_DIR@#$dir/data#g" \
      "$KAFKA_SRC/cluster-server.properties.in" > "$dir/server.properties"
}

kafka_cluster_id() {
  if [ ! -s "$CLUSTER/kafka-cluster-id" ]; then
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 > "$CLUSTER/kafka-cluster-id"
  fi
  cat "$CLUSTER/kafka-cluster-id"
}

# kafka_tool CLASS ARGS...: one of Kafka's command-line tools, quietly.
kafka_tool() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$TOOLS/*:$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$TOOLS" "$@"
}

bootstrap() { echo "127.0.0.1:$KAFKA_PORT_1,127.0.0.1:$KAFKA_PORT_2,127.0.0.1:$KAFKA_PORT_3"; }

# The number of brokers the cluster reports (registered and not fenced).
kafka_registered() {
  kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(bootstrap)" 2>/dev/null \
    | grep -c '(id: [0-9]* rack' || true
}

# Starts brokers N... that do not run (all at once: a lone voter of three cannot start) and waits.
kafka_start_brokers() {
  local n dir started=""
  for n in "$@"; do
    dir="$(kdir "$n")"
    if kafka_pid "$dir" >/dev/null; then
      kill -CONT "$(kafka_pid "$dir")" 2>/dev/null || true   # not left paused
      continue
    fi
    port_busy "$(kafka_port "$n")" && die "port $(kafka_port "$n") of broker $n is taken by something else"
    kafka_render "$n"
    kafka_format "$dir" "$(kafka_cluster_id)"
    kafka_launch "$dir"
    started="$started $n"
  done
  for n in $started; do kafka_wait_started "$(kdir "$n")" 90; done
  [ -z "$started" ] || log "started broker(s)$started"
}

kafka_stop_brokers() { # N...: SIGTERM to all at once, SIGKILL after 30 s
  local n pid pids=""
  for n in "$@"; do
    if pid="$(kafka_pid "$(kdir "$n")")"; then
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      pids="$pids $pid"
    fi
  done
  for _ in $(seq 1 60); do
    local left=""
    for pid in $pids; do proc_running "$pid" && left="$left $pid"; done
    [ -z "$left" ] && break
    sleep 0.5
  done
  for pid in $pids; do proc_running "$pid" && kill -9 "$pid" 2>/dev/null; done
  for n in "$@"; do rm -f "$(kdir "$n")/broker.pid"; done
  [ -z "$pids" ] || log "stopped broker(s) $*"
}

kafka_up() {
  kafka_assemble
  kafka_tools_assemble "$TOOLS"
  kafka_start_brokers "${BROKERS[@]}"
  local count=0
  for _ in $(seq 1 60); do
    count="$(kafka_registered)"
    [ "$count" = 3 ] && return 0
    sleep 1
  done
  die "the Kafka cluster reports $count brokers, not 3, after 60 s"
}

# ---------------------------------------------------------------- PostgreSQL (pg_auto_failover)

pgdir() { case "$1" in monitor) echo "$PG_BASE/monitor" ;; *) echo "$PG_BASE/node$1" ;; esac; }

# pg_autoctl keeps its configuration and state under XDG folders: ours, in PG_BASE.
PG_ENV=()
pg_env() {
  [ "${#PG_ENV[@]}" -gt 0 ] && return 0
  PG_ENV=(env HOME="$PG_BASE" XDG_CONFIG_HOME="$PG_BASE/xdg/config" XDG_DATA_HOME="$PG_BASE/xdg/data"
    XDG_RUNTIME_DIR="$PG_BASE/xdg/run" PGUSER=postgres PGHOST=127.0.0.1 PATH="$(pg_bin):/usr/bin:/bin")
}

autoctl() { # pg_autoctl as the PostgreSQL owner
  pg_env
  as_pg_owner "${PG_ENV[@]}" pg_autoctl "$@"
}

monitor_url() { echo "postgres://autoctl_node@127.0.0.1:$PG_MONITOR_PORT/pg_auto_failover?sslmode=disable"; }

msql() { # SQL on the monitor
  psql -h 127.0.0.1 -p "$PG_MONITOR_PORT" -U postgres -d pg_auto_failover -XtAq -v ON_ERROR_STOP=1 -c "$1"
}

nsql() { # N SQL: on node N, 3 s at most to connect
  PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$(node_port "$1")" -U postgres -d "$PG_DB" -XtAq -v ON_ERROR_STOP=1 -c "$2"
}

pg_af_install() {
  pg_install
  command -v pg_autoctl >/dev/null || { log "installing pg_auto_failover"; apt_install postgresql-15-auto-failover; }
  if ! "$(pg_bin)/postgres" --version | grep -q ' 15\.'; then die "PostgreSQL 15 expected in $(pg_bin)"; fi
}

# keeper_pid NAME (monitor, 1, 2): the pid of its running `pg_autoctl run`.
keeper_pid() {
  local f="$PG_RUN/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  proc_running "$pid" && grep -q pg_autoctl "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# postmaster_pid DIR: the pid in DIR/postmaster.pid if that process runs.
postmaster_pid() {
  local pid
  pid="$(head -1 "$1/postmaster.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && proc_running "$pid" || return 1
  echo "$pid"
}

# Lock files left by a killed postmaster or keeper whose process is a zombie or gone: a
# zombie's pid still answers kill -0, and PostgreSQL would refuse to start over it.
clear_stale_locks() {
  local dir="$1" pid f
  if pid="$(head -1 "$dir/postmaster.pid" 2>/dev/null)" && [ -n "$pid" ] && ! proc_running "$pid"; then
    rm -f "$dir/postmaster.pid"
  fi
  # pg_autoctl's own pid file: in XDG_RUNTIME_DIR, or /tmp/pg_autoctl when that did not exist.
  for f in "$PG_BASE/xdg/run/pg_autoctl$dir/pg_autoctl.pid" "/tmp/pg_autoctl$dir/pg_autoctl.pid"; do
    pid="$(head -1 "$f" 2>/dev/null)" || continue
    if [ -z "$pid" ] || ! proc_running "$pid"; then rm -f "$f"; fi
  done
}

# keeper_start NAME: `pg_autoctl run` in the background as the owner, in its own session
# (setsid, nohup; setpriv, unlike runuser, does not fork: the pid file holds pg_autoctl's pid).
keeper_start() {
  local name="$1" dir as_owner=()
  dir="$(pgdir "$name")"
  keeper_pid "$name" >/dev/null && return 0
  clear_stale_locks "$dir"
  mkdir -p "$PG_RUN"
  pg_env
  if [ "$(id -u)" = 0 ]; then
    as_owner=(setpriv --reuid="$PG_OS_USER" --regid="$(id -g "$PG_OS_USER")" --init-groups)
  fi
  (cd / || exit 1
   setsid nohup "${as_owner[@]}" "${PG_ENV[@]}" pg_autoctl run --pgdata "$dir" \
      >> "$PG_RUN/$name.log" 2>&1 < /dev/null &
   echo $! > "$PG_RUN/$name.pid")
}

# keeper_stop NAME: SIGTERM (pg_autoctl stops its postgres), SIGKILL of everything after 30 s.
keeper_stop() {
  local name="$1" pid dir tree
  dir="$(pgdir "$name")"
  if pid="$(keeper_pid "$name")"; then
    mapfile -t tree < <(proc_tree "$pid")
    kill -CONT "${tree[@]}" 2>/dev/null || true
    kill "$pid"
    for _ in $(seq 1 60); do proc_running "$pid" || break; sleep 0.5; done
    if proc_running "$pid"; then
      log "the $name keeper did not stop in 30 s: SIGKILL"
      mapfile -t tree < <(proc_tree "$pid")
      kill -9 "${tree[@]}" 2>/dev/null || true
    fi
  fi
  rm -f "$PG_RUN/$name.pid"
  # A postgres without its keeper (the keeper was killed) is stopped directly.
  if [ -f "$dir/PG_VERSION" ] && postmaster_pid "$dir" >/dev/null; then
    pg_stop "$dir" fast || true
  fi
}

# Overrides of pg_auto_failover's own tuning (it sizes shared_buffers at a quarter of the
# machine's memory), included after its file: the last setting wins.
pg_cluster_conf() { # DIR [monitor]
  local dir="$1" conf
  # pg_init turns Unix sockets off; pg_autoctl needs one: it starts Postgres without TCP for
  # the crash recovery before a pg_rewind (a node that was SIGKILLed and rejoins).
  conf="listen_addresses = '127.0.0.1'
unix_socket_directories = '$(pg_sock_dir)'
max_connections = 300
shared_buffers = '128MB'
effective_cache_size = '1GB'
work_mem = '4MB'
maintenance_work_mem = '64MB'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_log_hints = on"
  if [ "${2:-}" = monitor ]; then
    conf="$conf
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.primary_demote_timeout = 5000
pgautofailover.startup_grace_period = 5000"
  fi
  printf '# deploy/local/cluster.sh\n%s\n' "$conf" | as_pg_owner tee "$dir/postgresql-cluster.conf" >/dev/null
  as_pg_owner grep -q "^include_if_exists 'postgresql-cluster.conf'" "$dir/postgresql.conf" \
    || printf "include_if_exists 'postgresql-cluster.conf'\n" | as_pg_owner tee -a "$dir/postgresql.conf" >/dev/null
}

# Where the nodes' Unix sockets go (a socket's path has at most 107 bytes).
pg_sock_dir() {
  if [ "${#PG_BASE}" -le 80 ]; then echo "$PG_BASE/sock"
  else echo "/tmp/inventory-pg-sock-$(printf '%s' "$PG_BASE" | md5sum | cut -c1-12)"; fi
}

keeper_timeouts() { # DIR
  autoctl config set --pgdata "$1" timeout.network_partition_timeout 4 >/dev/null
  autoctl config set --pgdata "$1" timeout.prepare_promotion_walreceiver 2 >/dev/null
}

monitor_up() {
  local dir
  dir="$(pgdir monitor)"
  if [ ! -f "$PG_RUN/monitor.created" ]; then
    PG_DURABLE=1 PG_STAT_STATEMENTS=0 pg_init "$dir"
    log "creating the pg_auto_failover monitor on 127.0.0.1:$PG_MONITOR_PORT"
    autoctl create monitor --pgdata "$dir" --pgport "$PG_MONITOR_PORT" --hostname 127.0.0.1 \
      --auth trust --no-ssl >> "$PG_RUN/monitor.log" 2>&1 \
      || { tail -20 "$PG_RUN/monitor.log" >&2; die "pg_autoctl create monitor failed; see $PG_RUN/monitor.log"; }
    autoctl config set --pgdata "$dir" postgresql.listen_addresses 127.0.0.1 >/dev/null
    pg_cluster_conf "$dir" monitor
    if postmaster_pid "$dir" >/dev/null; then pg_stop "$dir" fast; fi
    touch "$PG_RUN/monitor.created"
  fi
  keeper_start monitor
  for _ in $(seq 1 60); do
    msql "select 1" >/dev/null 2>&1 && return 0
    keeper_pid monitor >/dev/null || { tail -20 "$PG_RUN/monitor.log" >&2; die "the monitor's pg_autoctl exited"; }
    sleep 0.5
  done
  die "the monitor does not answer on 127.0.0.1:$PG_MONITOR_PORT after 30 s; see $PG_RUN/monitor.log"
}

node_up() { # N
  local n="$1" dir
  dir="$(pgdir "$n")"
  if [ ! -f "$PG_RUN/node$n.created" ]; then
    # Node 1 is initialised here (superuser postgres, trust on loopback, durable); node 2 is
    # an empty folder that pg_autoctl fills with a base backup of the primary.
    if [ "$n" = 1 ]; then PG_DURABLE=1 PG_STAT_STATEMENTS=0 pg_init "$dir"; else pg_owned_dir "$dir"; fi
    log "creating PostgreSQL node $n on 127.0.0.1:$(node_port "$n") (pg_auto_failover)"
    autoctl create postgres --pgdata "$dir" --pgport "$(node_port "$n")" --pghost 127.0.0.1 \
      --listen 127.0.0.1 --hostname 127.0.0.1 --username postgres --dbname "$PG_DB" --name "node$n" \
      --formation "$FORMATION" --monitor "$(monitor_url)" --auth trust --no-ssl \
      --replication-quorum true --candidate-priority 50 >> "$PG_RUN/$n.log" 2>&1 \
      || { tail -20 "$PG_RUN/$n.log" >&2; die "pg_autoctl create postgres (node $n) failed; see $PG_RUN/$n.log"; }
    pg_cluster_conf "$dir"
    keeper_timeouts "$dir"
    # Started again by its keeper with the settings above (max_connections needs a restart).
    if postmaster_pid "$dir" >/dev/null; then pg_stop "$dir" fast; fi
    touch "$PG_RUN/node$n.created"
  fi
  keeper_start "$n"
}

# node_state N: "reported goal" as the monitor has them.
node_state() {
  msql "select reportedstate || ' ' || goalstate from pgautofailover.node
        where formationid = '$FORMATION' and nodename = 'node$1'"
}

# The primary node's number, per the monitor (reported and goal state agree on a primary role).
monitor_primary() {
  msql "select substr(nodename, 5) from pgautofailover.node
        where formationid = '$FORMATION' and reportedstate = goalstate
          and reportedstate in ('single', 'wait_primary', 'primary', 'join_primary', 'apply_settings')
        order by nodeid limit 1" 2>/dev/null
}

formation_healthy() { # a primary and a secondary, both settled
  local s1 s2
  s1="$(node_state 1 2>/dev/null)" && s2="$(node_state 2 2>/dev/null)" || return 1
  case "$s1/$s2" in
    "primary primary/secondary secondary"|"secondary secondary/primary primary") return 0 ;;
  esac
  return 1
}

# The monitor's view, and both nodes answer (the monitor may not have noticed yet that a
# node was killed), the primary read-write.
formation_ready() {
  local p
  formation_healthy && nsql 1 "select 1" >/dev/null 2>&1 && nsql 2 "select 1" >/dev/null 2>&1 \
    && p="$(monitor_primary)" && [ "$(nsql "$p" "select not pg_is_in_recovery()" 2>/dev/null)" = t ]
}

wait_formation() { # SECONDS
  for _ in $(seq 1 $(( $1 * 2 ))); do
    formation_ready && return 0
    sleep 0.5
  done
  return 1
}

pg_up() {
  pg_af_install
  pg_owned_dir "$PG_BASE"
  pg_owned_dir "$(pg_sock_dir)"
  as_pg_owner mkdir -p "$PG_BASE/xdg/config" "$PG_BASE/xdg/data" "$PG_BASE/xdg/run"
  mkdir -p "$PG_RUN"
  monitor_up
  node_up 1
  # Node 2's base backup needs node 1 up as primary (single).
  if [ ! -f "$PG_RUN/node2.created" ]; then
    for _ in $(seq 1 120); do
      [ "$(node_state 1 2>/dev/null)" = "single single" ] && break
      keeper_pid 1 >/dev/null || { tail -20 "$PG_RUN/1.log" >&2; die "node 1's pg_autoctl exited"; }
      sleep 0.5
    done
  fi
  node_up 2
  wait_formation 180 || { pg_show_state >&2; die "the formation has no primary and secondary after 180 s"; }
  local p
  p="$(monitor_primary)"
  pg_create_db "$(node_port "$p")" "$PG_DB"
  local names
  names="$(nsql "$p" "show synchronous_standby_names")"
  [ -n "$names" ] || die "the primary (node $p) has no synchronous_standby_names"
  log "PostgreSQL: primary node $p, synchronous_standby_names = $names"
}

pg_show_state() {
  msql "select nodename, nodehost || ':' || nodeport, reportedstate, goalstate, reportedlsn
        from pgautofailover.node where formationid = '$FORMATION' order by nodeid" 2>/dev/null \
    | sed 's/^/  /' || echo "  (monitor not answering)"
}

pg_down() {
  command -v pg_autoctl >/dev/null || return 0
  [ -d "$PG_BASE" ] || return 0
  local n
  for n in 2 1 monitor; do
    if keeper_pid "$n" >/dev/null || { [ -f "$(pgdir "$n")/PG_VERSION" ] && postmaster_pid "$(pgdir "$n")" >/dev/null; }; then
      log "stopping PostgreSQL $([ "$n" = monitor ] && echo monitor || echo "node $n")"
      keeper_stop "$n"
    fi
  done
}

# ---------------------------------------------------------------- env file, status

write_env() {
  {
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_NODE_PORT_1,127.0.0.1:$PG_NODE_PORT_2/$PG_DB?target_session_attrs=read-write"
    echo "KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)"
    echo "KAFKA_TOPIC_REPLICATION_FACTOR=3"
    echo "KAFKA_TOPIC_MIN_INSYNC_REPLICAS=2"
    echo "CLUSTER_PG_MONITOR_URL=$(monitor_url)"
    echo "CLUSTER_PG_NODE1_PORT=$PG_NODE_PORT_1"
    echo "CLUSTER_PG_NODE2_PORT=$PG_NODE_PORT_2"
    echo "CLUSTER_PG_NODE1_URL=postgres://postgres@127.0.0.1:$PG_NODE_PORT_1/$PG_DB"
    echo "CLUSTER_PG_NODE2_URL=postgres://postgres@127.0.0.1:$PG_NODE_PORT_2/$PG_DB"
    echo "CLUSTER_KAFKA_BROKER1_PORT=$KAFKA_PORT_1"
    echo "CLUSTER_KAFKA_BROKER2_PORT=$KAFKA_PORT_2"
    echo "CLUSTER_KAFKA_BROKER3_PORT=$KAFKA_PORT_3"
    echo "CLUSTER_SCRIPT=$ROOT/deploy/local/cluster.sh"
  } > "$ENV_FILE"
  log "written to $ENV_FILE"
}

status() {
  if [ ! -f "$PORTS_FILE" ]; then echo "cluster: not set up"; return 0; fi
  load_ports
  local n pid
  for n in "${BROKERS[@]}"; do
    if pid="$(kafka_pid "$(kdir "$n")")"; then
      local st; st="$(sed -n 's/^State:\s*//p' "/proc/$pid/status" 2>/dev/null)"
      echo "kafka broker $n: running (pid $pid, 127.0.0.1:$(kafka_port "$n"), $st)"
    else
      echo "kafka broker $n: stopped (127.0.0.1:$(kafka_port "$n"))"
    fi
  done
  for n in monitor "${NODES[@]}"; do
    local label="postgres node $n" port
    if [ "$n" = monitor ]; then label="pg monitor"; port="$PG_MONITOR_PORT"; else port="$(node_port "$n")"; fi
    if pid="$(keeper_pid "$n")"; then
      echo "$label: keeper running (pid $pid), postgres $(postmaster_pid "$(pgdir "$n")" >/dev/null 2>&1 && echo running || echo stopped) on 127.0.0.1:$port"
    else
      echo "$label: keeper stopped, postgres $(postmaster_pid "$(pgdir "$n")" >/dev/null 2>&1 && echo running || echo stopped) on 127.0.0.1:$port"
    fi
  done
  if msql "select 1" >/dev/null 2>&1; then
    echo "formation $FORMATION (monitor's view: node, address, reported state, goal state, LSN):"
    pg_show_state
    if n="$(monitor_primary)" && [ -n "$n" ]; then echo "pg primary: node $n"; else echo "pg primary: none"; fi
  fi
  [ -f "$ENV_FILE" ] && cat "$ENV_FILE"
  true
}

# ---------------------------------------------------------------- faults

pg_primary_or_die() {
  load_ports
  local p
  p="$(monitor_primary)" || die "the monitor does not answer on 127.0.0.1:$PG_MONITOR_PORT"
  [ -n "$p" ] || die "no primary now (formation: $(pg_show_state | tr -s ' \n' ' '))"
  # The monitor notices a killed primary only after a few seconds: it must answer too.
  [ "$(nsql "$p" "select not pg_is_in_recovery()" 2>/dev/null)" = t ] \
    || die "no primary now: the monitor's primary, node $p, does not answer as a primary"
  echo "$p"
}

pg_kill_primary() {
  local p dir roots=() pid keeper=none postmaster=none tree
  load_ports
  p="$(pg_primary_or_die)"
  dir="$(pgdir "$p")"
  if pid="$(keeper_pid "$p")"; then roots+=("$pid"); keeper="$pid"; fi
  if pid="$(postmaster_pid "$dir")"; then roots+=("$pid"); postmaster="$pid"; fi
  [ "${#roots[@]}" -gt 0 ] || die "node $p is primary for the monitor but neither its keeper nor its postgres runs"
  mapfile -t tree < <(proc_tree "${roots[@]}")
  # Freeze first, so no process of the tree reacts to another's death (restart, clean stop).
  kill -STOP "${tree[@]}" 2>/dev/null || true
  kill -KILL "${tree[@]}" 2>/dev/null || true
  rm -f "$PG_RUN/$p.pid"
  log "SIGKILLed primary node $p (port $(node_port "$p")): keeper $keeper, postmaster $postmaster, ${#tree[@]} processes in all"
  echo "$p"
}

pg_wait_primary() {
  local old="$1" p start=$SECONDS
  check_node "$old"
  load_ports
  for _ in $(seq 1 180); do
    p="$(monitor_primary 2>/dev/null)" || p=""
    if [ -n "$p" ] && [ "$p" != "$old" ] && [ "$(nsql "$p" "select not pg_is_in_recovery()" 2>/dev/null)" = t ]; then
      log "node $p is primary and writable (after $((SECONDS - start)) s of waiting)"
      echo "$p"
      return 0
    fi
    sleep 0.5
  done
  die "no node other than $old became a writable primary within 90 s (formation: $(pg_show_state | tr -s ' \n' ' '))"
}

pg_rejoin() {
  local n="$1" start=$SECONDS
  check_node "$n"
  load_ports
  keeper_start "$n"
  for _ in $(seq 1 240); do
    if [ "$(node_state "$n" 2>/dev/null)" = "secondary secondary" ] && formation_ready; then
      log "node $n rejoined as secondary in $((SECONDS - start)) s"
      return 0
    fi
    keeper_pid "$n" >/dev/null || { tail -20 "$PG_RUN/$n.log" >&2; die "node $n's pg_autoctl exited; see $PG_RUN/$n.log"; }
    sleep 0.5
  done
  die "node $n is not secondary after 120 s (formation: $(pg_show_state | tr -s ' \n' ' '))"
}

broker_signal() { # N SIGNAL WHAT
  local pid
  check_broker "$1"
  pid="$(kafka_pid "$(kdir "$1")")" || die "broker $1 does not run"
  kill -"$2" "$pid"
  log "$3 broker $1 (pid $pid)"
}

# ---------------------------------------------------------------- main

cmd="${1:-up}"
shift || true
case "$cmd" in
  up)
    start=$SECONDS
    mkdir -p "$CLUSTER"
    load_ports choose
    kafka_up
    pg_up
    write_env
    log "cluster up in $((SECONDS - start)) s: Kafka $(bootstrap), PostgreSQL nodes $PG_NODE_PORT_1 and $PG_NODE_PORT_2"
    ;;
  down)
    if [ -f "$PORTS_FILE" ]; then load_ports; fi
    kafka_stop_brokers "${BROKERS[@]}"
    pg_down
    ;;
  reset)
    if [ -f "$PORTS_FILE" ]; then load_ports; fi
    kafka_stop_brokers "${BROKERS[@]}"
    pg_down
    [ -L "$PG_BASE" ] && rm -rf "$(readlink "$PG_BASE")"
    rm -rf "$PG_BASE" "$PG_RUN" "/tmp/pg_autoctl$PG_BASE" "$CLUSTER"/kafka-* "$CLUSTER/kafka-cluster-id" "$PORTS_FILE" "$ENV_FILE"
    log "cluster data deleted"
    ;;
  status) status ;;
  broker-kill) broker_signal "${1:-}" KILL "SIGKILLed" ;;
  broker-pause) broker_signal "${1:-}" STOP "paused (SIGSTOP)" ;;
  broker-resume) broker_signal "${1:-}" CONT "resumed (SIGCONT)" ;;
  broker-start)
    check_broker "${1:-}"
    load_ports
    start=$SECONDS
    dir="$(kdir "$1")"
    if pid="$(kafka_pid "$dir")"; then
      kill -CONT "$pid" 2>/dev/null || true
      log "broker $1 already runs (pid $pid)"
    else
      [ -f "$dir/data/meta.properties" ] || die "broker $1 has no data: run cluster.sh up"
      port_busy "$(kafka_port "$1")" && die "port $(kafka_port "$1") of broker $1 is taken by something else"
      kafka_render "$1"
      kafka_launch "$dir"
      kafka_wait_started "$dir" 90
      log "broker $1 started in $((SECONDS - start)) s (pid $(kafka_pid "$dir"))"
    fi
    ;;
  broker-port) check_broker "${1:-}"; load_ports; kafka_port "$1" ;;
  pg-primary) load_ports; p="$(pg_primary_or_die)"; log "primary: node $p"; echo "$p" ;;
  pg-kill-primary) pg_kill_primary ;;
  pg-wait-primary) pg_wait_primary "${1:-}" ;;
  pg-rejoin) pg_rejoin "${1:-}" ;;
  pg-node-port) check_node "${1:-}"; load_ports; node_port "$1" ;;
  kafka-tool) load_ports; kafka_tool "$@" ;;
  *) die "usage: cluster.sh up|down|reset|status|broker-kill N|broker-start N|broker-pause N|broker-resume N|broker-port N|pg-primary|pg-kill-primary|pg-wait-primary OLD|pg-rejoin N|pg-node-port N|kafka-tool CLASS ARGS" ;;
esac
