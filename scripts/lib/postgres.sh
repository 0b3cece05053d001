# Sourced by scripts/test.sh (and usable on its own: `. scripts/lib/postgres.sh;
# pg_start; ...; pg_stop`). Starts a throwaway PostgreSQL cluster for the test
# run and exports CRABBOX_TEST_POSTGRES_URL, which the store tests and the
# PostgreSQL benchmark read; each test creates its own database in it.
#
# The cluster lives in one temporary directory (data, unix socket, log), listens
# on 127.0.0.1 only, on a free port, with trust authentication: nothing outside
# this machine can reach it and it is deleted by pg_stop. PostgreSQL refuses
# to run as root, so as root the cluster belongs to the `postgres` user the
# Debian package creates; as anyone else it simply belongs to the caller (no
# sudo needed for this part).
#
# Durability is traded for speed (fsync off) unless CRABBOX_PG_DURABLE=1:
# the data is thrown away anyway. Extra server settings can be passed in
# CRABBOX_PG_OPTIONS, e.g. "-c synchronous_commit=off".

PG_DIR=""

# pg_as runs a command as the cluster's owner.
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_free_port prints a TCP port on 127.0.0.1 that nothing listens on now.
pg_free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "pg_free_port: no free port found" >&2
  return 1
}

pg_start() {
  if [ -n "${CRABBOX_TEST_POSTGRES_URL:-}" ]; then
    echo "== PostgreSQL: using CRABBOX_TEST_POSTGRES_URL from the environment"
    return 0
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ]; then
    echo "pg_start: PostgreSQL is not installed (apt-get install postgresql)" >&2
    return 1
  fi
  PG_BIN=$bin
  # /tmp rather than $TMPDIR: as root the postgres user must be able to
  # reach the directory, and a root-only TMPDIR would not let it.
  PG_DIR=$(mktemp -d /tmp/crabbox-pg.XXXXXX)
  mkdir -p "$PG_DIR/sock"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$PG_DIR"; fi

  pg_as "$bin/initdb" --pgdata="$PG_DIR/data" --username=postgres --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    return 1
  }

  local opts="-c listen_addresses=127.0.0.1 -k $PG_DIR/sock -c max_connections=400"
  if [ "${CRABBOX_PG_DURABLE:-}" != "1" ]; then
    opts="$opts -c fsync=off -c full_page_writes=off"
  fi
  opts="$opts ${CRABBOX_PG_OPTIONS:-}"
  # A port found free can be taken before the server binds it: try again.
  local port tries=0
  while :; do
    port=$(pg_free_port)
    if pg_as "$bin/pg_ctl" start --pgdata="$PG_DIR/data" --wait --timeout=60 \
      --log="$PG_DIR/server.log" --options="$opts -p $port" >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 3 ]; then
      echo "pg_start: the server did not start:" >&2
      tail -n 20 "$PG_DIR/server.log" >&2
      return 1
    fi
  done
  export CRABBOX_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)"
}

# pg_stop stops the cluster pg_start started, if any, and deletes it. Safe to
# call twice and from a trap.
pg_stop() {
  if [ -z "$PG_DIR" ]; then return 0; fi
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    pg_as "$PG_BIN/pg_ctl" stop --pgdata="$PG_DIR/data" --mode=immediate --wait >/dev/null 2>&1 || true
  fi
  rm -rf "$PG_DIR"
  PG_DIR=""
  unset CRABBOX_TEST_POSTGRES_URL
}
