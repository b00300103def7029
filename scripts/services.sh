#!/usr/bin/env bash
# Brings up the services hybridgrid's tests talk to, on loopback:
#   postgres  PostgreSQL on 127.0.0.1:$HG_PG_PORT (5432), trust auth for 127.0.0.1, database `test`
#   redis     Redis on 127.0.0.1:$HG_REDIS_PORT (6379)
#   nats      nats-server with JetStream on 127.0.0.1:$HG_NATS_PORT (4222)
#   docker    a Docker engine (only when asked for by name)
# For each: use it if it already answers; else start it if it is installed; else install it with
# apt-get when running as root; else print exactly what to run, and exit non-zero.
# Idempotent and quiet when everything is up.  Usage: scripts/services.sh [postgres] [redis] [nats] [docker]
# (no argument: postgres redis nats).
set -uo pipefail

PG_PORT=${HG_PG_PORT:-5432}
REDIS_PORT=${HG_REDIS_PORT:-6379}
NATS_PORT=${HG_NATS_PORT:-4222}
STATE=${HG_SERVICES_DIR:-${TMPDIR:-/tmp}/hybridgrid-services}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(postgres redis nats)

say() { echo "services: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# wait_until SECONDS CMD...: polls CMD every 0.2 s.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do [ "$(date +%s)" -ge "$deadline" ] && return 1; sleep 0.2; done
}
apt_updated=
apt_install() {
  if ! is_root || ! command -v apt-get >/dev/null; then return 1; fi
  say "installing $* with apt-get"
  if [ -z "$apt_updated" ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# cannot NAME HOW: the service is missing and we cannot fix it; say what to do.
cannot() { say "$1 is not available. $2"; return 1; }

# --- Redis -------------------------------------------------------------------------------------
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || { port_open "$REDIS_PORT" && ! command -v redis-cli >/dev/null; }; }
start_redis() {
  redis_up && return 0
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server redis-tools ||
      { cannot redis "Install it (Debian/Ubuntu: sudo apt-get install redis-server) or start one on 127.0.0.1:$REDIS_PORT."; return 1; }
  fi
  mkdir -p "$STATE"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --pidfile "$STATE/redis-$REDIS_PORT.pid" --logfile "$STATE/redis-$REDIS_PORT.log" >/dev/null ||
    { cannot redis "redis-server failed to start; see $STATE/redis-$REDIS_PORT.log."; return 1; }
  wait_until 10 redis_up || { cannot redis "redis-server did not answer on 127.0.0.1:$REDIS_PORT within 10 s; see $STATE/redis-$REDIS_PORT.log."; return 1; }
  say "redis started on 127.0.0.1:$REDIS_PORT (pid $(cat "$STATE/redis-$REDIS_PORT.pid" 2>/dev/null))"
}

# --- NATS with JetStream -----------------------------------------------------------------------
# The server's INFO line (sent on connect) says whether JetStream is on.
nats_info() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT; IFS= read -r line <&3; printf '%s\\n' \"\$line\"" 2>/dev/null; }
nats_up() { nats_info | grep -q '"jetstream":true'; }
nats_bin() { command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; }; }
start_nats() {
  nats_up && return 0
  if port_open "$NATS_PORT"; then
    cannot nats "Something answers on 127.0.0.1:$NATS_PORT without JetStream: restart nats-server with -js."
    return 1
  fi
  if [ -z "$(nats_bin)" ]; then
    apt_install nats-server ||
      { cannot nats "Install nats-server (Debian/Ubuntu: sudo apt-get install nats-server) and run: nats-server -a 127.0.0.1 -p $NATS_PORT -js"; return 1; }
  fi
  mkdir -p "$STATE/nats-$NATS_PORT"
  nohup "$(nats_bin)" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats-$NATS_PORT" \
    -P "$STATE/nats-$NATS_PORT.pid" -l "$STATE/nats-$NATS_PORT.log" >/dev/null 2>&1 &
  wait_until 10 nats_up || { cannot nats "nats-server did not answer with JetStream on 127.0.0.1:$NATS_PORT within 10 s; see $STATE/nats-$NATS_PORT.log."; return 1; }
  say "nats started on 127.0.0.1:$NATS_PORT with JetStream (pid $(cat "$STATE/nats-$NATS_PORT.pid" 2>/dev/null))"
}

# --- PostgreSQL --------------------------------------------------------------------------------
pg_ok() { psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -w -c 'select 1' >/dev/null 2>&1; }
as_postgres() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_postgres() {
  pg_ok && return 0
  if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null; then
    apt_install postgresql postgresql-client ||
      { cannot postgres "Install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql), allow trust auth for user postgres on 127.0.0.1 and create database test."; return 1; }
  fi
  local version
  version=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1; exit}')
  [ -n "$version" ] || version=$(pg_lsclusters -h 2>/dev/null | awk '{print $1; exit}')
  if [ -z "$version" ]; then
    is_root || { cannot postgres "No PostgreSQL cluster exists. Run: sudo pg_createcluster --start <version> main"; return 1; }
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$version" main -p "$PG_PORT" >/dev/null || { cannot postgres "pg_createcluster $version main failed."; return 1; }
  fi
  if ! port_open "$PG_PORT"; then
    if is_root; then pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1
    else pg_ctlcluster "$version" main start >/dev/null 2>&1; fi
    wait_until 20 port_open "$PG_PORT" || { cannot postgres "PostgreSQL $version did not start; see /var/log/postgresql/."; return 1; }
    say "postgres $version started on 127.0.0.1:$PG_PORT"
  fi
  pg_ok && return 0
  is_root || { cannot postgres "PostgreSQL runs but user postgres cannot log in to database test on 127.0.0.1 without a password. As root, add 'host all postgres 127.0.0.1/32 trust' at the top of pg_hba.conf, reload, and run: createdb -U postgres test"; return 1; }
  local hba
  hba=$(as_postgres psql -X -At -p "$PG_PORT" -c 'show hba_file' 2>/dev/null)
  if [ -n "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_postgres psql -X -q -p "$PG_PORT" -c 'select pg_reload_conf()' >/dev/null
    say "postgres: trust auth on loopback added to $hba"
  fi
  if ! as_postgres psql -X -At -p "$PG_PORT" -c "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    as_postgres createdb -p "$PG_PORT" test && say "postgres: database test created"
  fi
  wait_until 5 pg_ok || { cannot postgres "still cannot log in as postgres to database test on 127.0.0.1:$PG_PORT."; return 1; }
}

# --- Docker (on request) -----------------------------------------------------------------------
docker_up() { docker info >/dev/null 2>&1; }
start_docker() {
  docker_up && return 0
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io || { cannot docker "Install a Docker engine (Debian/Ubuntu: sudo apt-get install docker.io) and start it."; return 1; }
  fi
  is_root || { cannot docker "dockerd is installed but not running; start it (sudo service docker start)."; return 1; }
  mkdir -p "$STATE"
  nohup dockerd >"$STATE/dockerd.log" 2>&1 &
  wait_until 30 docker_up || { cannot docker "dockerd did not come up within 30 s; see $STATE/dockerd.log."; return 1; }
  say "docker engine started"
}

fail=0
for s in "${want[@]}"; do
  case "$s" in
    postgres | redis | nats | docker) "start_$s" || fail=1 ;;
    *) say "unknown service $s (use postgres, redis, nats, docker)"; fail=1 ;;
  esac
done
exit "$fail"
