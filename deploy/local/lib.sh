# Shared by stack.sh (the developer's servers) and instance.sh (a test's own
# servers): find or install PostgreSQL and Kafka, create and start clusters.
# Source it with ROOT set to the workspace root.

LOCAL="$ROOT/.local"
PG_OS_USER="${PG_OS_USER:-inventory-pg}"
KAFKA_SRC="$ROOT/deploy/local/kafka"
# The assembled Kafka jars, shared by every broker this workspace starts.
KAFKA_LIBS="$LOCAL/kafka/libs"

log() { printf '[%s] %s\n' "${LOG_TAG:-stack}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${LOG_TAG:-stack}" "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from $1 on that nothing listens on (and is not $2).
free_port() {
  local port="$1" skip="${2:-}"
  while port_busy "$port" || [ "$port" = "$skip" ]; do
    port=$((port + 1))
    [ "$port" -lt $(( $1 + 100 )) ] || die "no free port from $1 on"
  done
  echo "$port"
}

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

pg_install() {
  if ! pg_bin >/dev/null; then
    log "installing PostgreSQL from Debian packages"
    apt_install postgresql postgresql-contrib
  fi
  if [ "$(id -u)" = 0 ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

# pg_init DIR: a new cluster in DIR (unless there is one) for loopback, trust auth.
pg_init() {
  local dir="$1" bin
  bin="$(pg_bin)"
  [ -f "$dir/PG_VERSION" ] && return 0
  log "initialising a PostgreSQL cluster in $dir"
  mkdir -p "$(dirname "$dir")"
  if [ "$(id -u)" = 0 ]; then
    chmod o+x "$(dirname "$dir")"
    if ! runuser -u "$PG_OS_USER" -- test -x "$(dirname "$dir")"; then
      # A parent folder (e.g. /root) is closed to the cluster's owner: keep
      # the data outside and link it here.
      local real
      real="/var/tmp/inventory-pg-$(printf '%s' "$dir" | md5sum | cut -c1-12)"
      rm -rf "$real" "$dir"
      mkdir -p "$real"
      ln -s "$real" "$dir"
    fi
    mkdir -p "$dir"
    chown "$PG_OS_USER" "$dir/" && chmod 700 "$dir/"
  else
    mkdir -p "$dir"
  fi
  as_pg_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$dir/postgresql.conf" <<'CONF'
# inventory local cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
CONF
  if [ "${PG_STAT_STATEMENTS:-1}" = 1 ]; then
    # Per-statement execution times (the view pg_stat_statements, once the extension is created):
    # the benchmark reads them, and they are what an operator asks first of a slow database.
    # PG_STAT_STATEMENTS=0 leaves shared_preload_libraries alone (pg_auto_failover sets its own).
    printf "shared_preload_libraries = 'pg_stat_statements'\n" >> "$dir/postgresql.conf"
  fi
  if [ "${PG_DURABLE:-0}" = 1 ]; then
    # Crashed on purpose by tests (pg_ctl stop -m immediate): a commit it acknowledged must survive.
    printf 'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n' >> "$dir/postgresql.conf"
  else
    # A development and test cluster: losing the last commits on a crash is fine.
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >> "$dir/postgresql.conf"
  fi
}

# pg_tls DIR CERTDIR: TLS only. The server's certificate and key (CERTDIR/server.crt, server.key)
# go into the cluster, ssl is turned on, and pg_hba.conf accepts TLS connections alone.
pg_tls() {
  local dir="$1" certs="$2"
  cp "$certs/server.crt" "$certs/server.key" "$dir/"
  if [ "$(id -u)" = 0 ]; then chown "$PG_OS_USER" "$dir/server.crt" "$dir/server.key"; fi
  chmod 600 "$dir/server.key"
  grep -q "^ssl = on" "$dir/postgresql.conf" \
    || printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >> "$dir/postgresql.conf"
  printf 'hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n' > "$dir/pg_hba.conf"
}

pg_running() { as_pg_owner "$(pg_bin)/pg_ctl" -D "$1" status >/dev/null 2>&1; }

# pg_start DIR PORT: starts the cluster on 127.0.0.1:PORT and waits for it.
pg_start() {
  local dir="$1" port="$2"
  as_pg_owner "$(pg_bin)/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null \
    || { tail -20 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
}

# pg_stop DIR [MODE]: smart, fast (default) or immediate.
pg_stop() {
  as_pg_owner "$(pg_bin)/pg_ctl" -D "$1" -m "${2:-fast}" -w stop >/dev/null
}

# pg_create_db PORT NAME
pg_create_db() {
  if ! psql -h 127.0.0.1 -p "$1" -U postgres -tAc "select 1 from pg_database where datname='$2'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$1" -U postgres -qc "create database $2" >/dev/null
  fi
}

kafka_assemble() {
  command -v java >/dev/null || { log "installing Java"; apt_install openjdk-17-jre-headless; }
  command -v mvn >/dev/null || { log "installing Maven"; apt_install maven; }
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  if [ ! -f "$KAFKA_LIBS/.complete" ] || [ "$KAFKA_SRC/pom.xml" -nt "$KAFKA_LIBS/.complete" ]; then
    log "assembling Apache Kafka from Maven Central into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS"
    mvn -q -B -f "$KAFKA_SRC/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2
    touch "$KAFKA_LIBS/.complete"
  fi
}

# kafka_pid DIR: the broker's pid, if it runs.
kafka_pid() {
  [ -f "$1/broker.pid" ] || return 1
  local pid stat state; pid="$(cat "$1/broker.pid")"
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  # A SIGKILLed broker stays a zombie until its (adoptive) parent reaps it: that is not a
  # running broker, and taking it for one would skip the restart (kill -0 succeeds on zombies).
  state="${stat##*) }"; state="${state%% *}"
  case "$state" in Z|X|"") return 1 ;; esac
  echo "$pid"
}

# The brokers' JVM options: a small heap and the C1 compiler only, which starts fast and costs
# little CPU on 2 cores for the tests. KAFKA_JVM_OPTS replaces them; KAFKA_JVM_EXTRA_OPTS adds to
# them (the benchmark's GC log).
KAFKA_JVM_OPTS_DEFAULT="-Xms256m -Xmx512m -XX:+UseG1GC -XX:TieredStopAtLevel=1"

# kafka_start DIR PORT CONTROLLER_PORT: a single-node KRaft broker with its
# data in DIR/data (formatted on first start, kept after), waited for. A test's
# secured broker adds DIR/extra.properties (appended: a later key wins) and
# DIR/scram-users (one `SCRAM-SHA-512=[name=...,password=...]` per line, created
# by Kafka's own StorageTool when the storage is formatted).
kafka_start() {
  local dir="$1" port="$2" cport="$3" cp="$KAFKA_LIBS/*"
  mkdir -p "$dir"
  sed -e "s#@KAFKA_PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$cport#g" \
      -e "s#@DATA_DIR@#$dir/data#g" "$KAFKA_SRC/server.properties.in" > "$dir/server.properties"
  if [ -f "$dir/extra.properties" ]; then cat "$dir/extra.properties" >> "$dir/server.properties"; fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting KRaft storage in $dir/data"
    local cluster_id user scram=()
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    if [ -f "$dir/scram-users" ]; then
      while IFS= read -r user || [ -n "$user" ]; do [ -n "$user" ] && scram+=(--add-scram "$user"); done < "$dir/scram-users"
    fi
    java -cp "$cp" -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$dir" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" "${scram[@]}" >/dev/null
  fi
  log "starting Kafka (KRaft, single node) on 127.0.0.1:$port"
  # A fresh log, so the start-up line below is this start's.
  rm -f "$dir/broker.log"
  # shellcheck disable=SC2086 # KAFKA_JVM_OPTS and KAFKA_JVM_EXTRA_OPTS are lists of options
  nohup java ${KAFKA_JVM_OPTS:-$KAFKA_JVM_OPTS_DEFAULT} ${KAFKA_JVM_EXTRA_OPTS:-} -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  local i
  for i in $(seq 1 120); do
    if grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$dir/broker.log" 2>/dev/null; then
      return 0
    fi
    kafka_pid "$dir" >/dev/null || { tail -n 30 "$dir/stdout.log" "$dir/broker.log" >&2 || true; die "Kafka exited during start-up"; }
    sleep 0.5
  done
  die "Kafka did not report start-up within 60 s; see $dir/broker.log"
}

# kafka_stop DIR: SIGTERM, then SIGKILL after 30 s.
kafka_stop() {
  local pid
  if pid="$(kafka_pid "$1")"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid"
    local i
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1/broker.pid"
}

# --- Used by cluster.sh (three brokers, pg_auto_failover); the functions above are unchanged. ---

# proc_running PID: the process exists and is not a zombie (kill -0 succeeds on zombies).
proc_running() {
  local stat state
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"; state="${state%% *}"
  case "$state" in Z|X|"") return 1 ;; esac
}

# proc_tree PID...: the pids given and all their descendants (live or not), one a line.
proc_tree() {
  ps -eo pid=,ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { added = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; added = 1 }
      } while (added)
      for (p in keep) print p
    }'
}

# pg_owned_dir DIR: DIR exists and belongs to the PostgreSQL owner (when root); kept in
# /var/tmp and linked when a parent folder is closed to that user (as pg_init does).
pg_owned_dir() {
  local dir="$1"
  [ -d "$dir" ] && { [ "$(id -u)" != 0 ] || runuser -u "$PG_OS_USER" -- test -w "$dir/"; } && return 0
  mkdir -p "$(dirname "$dir")"
  if [ "$(id -u)" = 0 ]; then
    chmod o+x "$(dirname "$dir")"
    if ! runuser -u "$PG_OS_USER" -- test -x "$(dirname "$dir")"; then
      local real
      real="/var/tmp/inventory-pg-$(printf '%s' "$dir" | md5sum | cut -c1-12)"
      rm -rf "$real" "$dir"
      mkdir -p "$real"
      ln -s "$real" "$dir"
    fi
    mkdir -p "$dir"
    chown "$PG_OS_USER" "$dir/" && chmod 700 "$dir/"
  else
    mkdir -p "$dir"
  fi
}

# kafka_tools_assemble DIR: Kafka's command-line tools jar (kafka-tools, same version as the
# broker in pom.xml; its other dependencies are in KAFKA_LIBS) into DIR.
kafka_tools_assemble() {
  local dir="$1" version
  version="$(sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$KAFKA_SRC/pom.xml")"
  [ -f "$dir/kafka-tools-$version.jar" ] && return 0
  log "fetching kafka-tools $version from Maven Central into $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  mvn -q -B -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="org.apache.kafka:kafka-tools:$version" -DoutputDirectory="$dir" >&2
}

# kafka_format DIR CLUSTER_ID: formats DIR/data for DIR/server.properties (once).
kafka_format() {
  local dir="$1"
  [ -f "$dir/data/meta.properties" ] && return 0
  log "formatting KRaft storage in $dir/data"
  java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$dir" \
    kafka.tools.StorageTool format -t "$2" -c "$dir/server.properties" >/dev/null
}

# kafka_launch DIR: starts the broker of DIR/server.properties in its own session (a
# signal to the caller's process group does not reach it), with a fresh DIR/broker.log and
# DIR/broker.pid; does not wait (see kafka_wait_started).
kafka_launch() {
  local dir="$1"
  rm -f "$dir/broker.log"
  # shellcheck disable=SC2086 # KAFKA_JVM_OPTS and KAFKA_JVM_EXTRA_OPTS are lists of options
  setsid nohup java ${KAFKA_JVM_OPTS:-$KAFKA_JVM_OPTS_DEFAULT} ${KAFKA_JVM_EXTRA_OPTS:-} -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/broker.pid"
}

# kafka_wait_started DIR SECONDS: until the broker logs its start-up line; fails if it exits.
kafka_wait_started() {
  local dir="$1"
  for _ in $(seq 1 $(( $2 * 2 ))); do
    grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$dir/broker.log" 2>/dev/null && return 0
    kafka_pid "$dir" >/dev/null || { tail -n 30 "$dir/stdout.log" "$dir/broker.log" >&2 || true; die "Kafka in $dir exited during start-up"; }
    sleep 0.5
  done
  die "Kafka in $dir did not report start-up within $2 s; see $dir/broker.log"
}
