# shellcheck shell=bash
# Sourced by .ci/run (as root, on a clean Debian machine, CI=true): installs
# redis-server and PostgreSQL if they are missing, starts both on 127.0.0.1,
# creates the test database and user, waits until both answer, and exports
# their addresses for the tests:
#
#	EACHHOOK_REDIS_ADDR    host:port of a Redis server
#	EACHHOOK_POSTGRES_DSN  a pgx connection string for a database the user owns
#
# It is idempotent: a second run on the same machine, or a run with either
# server already up, finds what is there and starts only what is missing.
# It can also be run on its own: `source .ci/services.sh`.

eachhook_services() {
  local redis_port=6379 pg_port=5432
  local pg_user=eachhook pg_password=eachhook pg_db=eachhook
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

  if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "== services: installing redis-server and postgresql"
    $sudo apt-get update -q
    # The packages' start scripts may fail without an init system; the
    # servers are started below either way.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server postgresql >/dev/null
  fi

  # Redis: an ephemeral server, no persistence.
  if [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" != "PONG" ]; then
    echo "== services: starting redis-server on 127.0.0.1:$redis_port"
    redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
      --save '' --appendonly no --logfile /tmp/eachhook-redis.log \
      --pidfile /tmp/eachhook-redis.pid
  fi

  # PostgreSQL: the Debian cluster on pg_port, created if none exists.
  local pg_ver pg_cluster
  pg_ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  pg_cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$pg_port" '$3 == p { print $1 "/" $2; exit }')
  if [ -z "$pg_cluster" ]; then
    echo "== services: creating PostgreSQL $pg_ver cluster on port $pg_port"
    $sudo pg_createcluster -p "$pg_port" "$pg_ver" eachhook >/dev/null
    pg_cluster="$pg_ver/eachhook"
  fi
  $sudo install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  if ! pg_isready -q -h 127.0.0.1 -p "$pg_port"; then
    if ! pg_lsclusters -h | awk -v c="$pg_cluster" '$1 "/" $2 == c && $4 == "online" { found = 1 } END { exit !found }'; then
      echo "== services: starting PostgreSQL cluster $pg_cluster"
      $sudo pg_ctlcluster "${pg_cluster%/*}" "${pg_cluster#*/}" start
    fi
  fi

  local i
  for i in $(seq 1 60); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] &&
      pg_isready -q -h 127.0.0.1 -p "$pg_port"; then
      break
    fi
    if [ "$i" -eq 60 ]; then
      echo "services: redis or postgres did not answer within 30s" >&2
      return 1
    fi
    sleep 0.5
  done

  # The user and database, created once. CREATEDB lets tests make scratch
  # databases of their own.
  (cd / && $sudo runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$pg_port" -d postgres <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pg_user') THEN
    CREATE ROLE $pg_user LOGIN CREATEDB PASSWORD '$pg_password';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $pg_db OWNER $pg_user'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$pg_db')\gexec
SQL
  )

  export EACHHOOK_REDIS_ADDR="127.0.0.1:$redis_port"
  export EACHHOOK_POSTGRES_DSN="postgres://$pg_user:$pg_password@127.0.0.1:$pg_port/$pg_db?sslmode=disable"
  echo "== services: redis at $EACHHOOK_REDIS_ADDR, postgres at ${EACHHOOK_POSTGRES_DSN/:$pg_password@/:***@}"
}

eachhook_services
