#!/usr/bin/env bash
# The delivery queue kept in PostgreSQL (queue.OpenPostgres) against the file queue
# (queue.Open), same run, same machine: accepted msg/s (N messages of 2.4 KB committed by C
# goroutines, as SMTP sessions do before their 250) and delivered msg/s (Run with a deliverer
# that accepts at once, until the queue is empty). Both durable: the file queue fsyncs, and
# PostgreSQL runs with fsync and synchronous_commit on, on a throw-away cluster (initdb in a
# temporary folder, Unix socket only). Rounds alternate the two; ratio of the medians.
#
# usage: bench/pgqueue/run.sh [N=2000] [ROUNDS=3] [C=16]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000} R=${2:-3} C=${3:-16}

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/postgres" ] || { echo "bench/pgqueue: PostgreSQL missing (Debian package postgresql)"; exit 1; }

W=$(mktemp -d /var/tmp/mssante-pgqueue-bench.XXXXXX)
chmod 755 "$W"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$W/pg"
[ "$(id -u)" = 0 ] && chown postgres "$W/pg"
cleanup() {
	as_pg "$BIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
	[ -n "${PGQ_KEEPLOG:-}" ] && cp "$W/pg/log" "$PGQ_KEEPLOG"
	rm -rf "$W"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W/pg'
fsync = on
synchronous_commit = on
max_connections = 100
shared_buffers = 128MB
${PGQ_CONF:-}
CONF
as_pg "$BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w start >/dev/null

go build -o "$W/pgqueue" ./bench/pgqueue
echo "== $N messages a round, $C committers, $R rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$W/pgqueue" -dsn "host=$W/pg user=postgres dbname=postgres sslmode=disable" -dir "$W" -n "$N" -c "$C" -rounds "$R" ${PGQ_ARGS:-}
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
