#!/usr/bin/env bash
# Mailbox store benchmark: the PostgreSQL store against the SQLite store in the same run, on
# the same disk (bench/store/main.go): APPEND, FETCH of every body and SEARCH HEADER, the
# backends taking turns, medians of RUNS, ratio PostgreSQL/SQLite (> 1: PostgreSQL faster);
# first, bodies in PostgreSQL against bodies in a folder (append and read back, 20 KB and
# 1 MB); then the same over IMAP: our IMAP server on each store (bench/imap/imapserve), one
# client taking turns (bench/imap/load): APPEND, FETCH, SEARCH BODY and SEARCH HEADER, ratio
# PostgreSQL/SQLite as throughput (> 1: PostgreSQL faster); everything again with PostgreSQL's
# bodies in a folder (mailbox.Options.Blobs "dir:…"). A throw-away PostgreSQL cluster (initdb, Unix socket only, fsync on: both stores
# commit durably) is started here and removed at the end.
#
# Needs Debian's postgresql package (scripts/apt-packages.txt); under root the cluster runs as
# the postgres user. Usage: bench/store/run.sh [N] [SIZE] [WRITERS] [RUNS] [BALS]
#                           (defaults 1000 20480 1 3 1; writer w delivers to BAL w mod BALS)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
SIZE=${2:-20480}
WRITERS=${3:-1}
RUNS=${4:-3}
BALS=${5:-1}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$BIN/postgres" ] || { echo "PostgreSQL not installed (Debian package postgresql)" >&2; exit 1; }

W=$(mktemp -d /var/tmp/mssante-store-bench.XXXXXX)   # one disk for both stores
chmod 755 "$W"
AS=()
if [ "$(id -u)" = 0 ]; then
	AS=(runuser -u postgres --)
	mkdir "$W/pg" && chown postgres: "$W/pg"
else
	mkdir "$W/pg"
fi
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	"${AS[@]}" "$BIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

"${AS[@]}" "$BIN/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W/pg'
shared_buffers = 128MB
CONF
"${AS[@]}" "$BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w start >/dev/null
go build -o "$W/store" ./bench/store
mkdir "$W/ours"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$W/store" -dsn "host=$W/pg user=postgres dbname=postgres sslmode=disable" -dir "$W/ours" \
	-n "$N" -size "$SIZE" -writers "$WRITERS" -bals "$BALS" -rounds "$RUNS" -bodies

echo "== IMAP: $N messages of $SIZE bytes, our server on each store, $RUNS runs (medians)"
go build -o "$W/imapserve" ./bench/imap/imapserve
go build -o "$W/load" ./bench/imap/load
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PS=$(freeport); PP=$(freeport); PD=$(freeport)
"${AS[@]}" "$BIN/psql" -h "$W/pg" -U postgres -qc 'CREATE DATABASE imap' >/dev/null
"${AS[@]}" "$BIN/psql" -h "$W/pg" -U postgres -qc 'CREATE DATABASE imapdir' >/dev/null
"$W/imapserve" -dir "$W/imap-sqlite" -addr "127.0.0.1:$PS" -users u@bench.test:pass > "$W/sqlite.log" 2>&1 &
PIDS+=($!)
"$W/imapserve" -pg "host=$W/pg user=postgres dbname=imap sslmode=disable" -addr "127.0.0.1:$PP" -users u@bench.test:pass > "$W/pg.log" 2>&1 &
PIDS+=($!)
"$W/imapserve" -pg "host=$W/pg user=postgres dbname=imapdir sslmode=disable" -blobs "dir:$W/imap-blobs" -addr "127.0.0.1:$PD" -users u@bench.test:pass > "$W/pgdir.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	if (echo > /dev/tcp/127.0.0.1/$PS) 2>/dev/null && (echo > /dev/tcp/127.0.0.1/$PP) 2>/dev/null && (echo > /dev/tcp/127.0.0.1/$PD) 2>/dev/null; then break; fi
	sleep 0.1
done
"$W/load" -a "sqlite=127.0.0.1:$PS,u@bench.test,pass" -b "postgres=127.0.0.1:$PP,u@bench.test,pass" \
	-n "$N" -size "$SIZE" -runs "$RUNS"
echo "== IMAP: the same, PostgreSQL with its bodies in a folder (Options.Blobs)"
"$W/load" -a "sqlite=127.0.0.1:$PS,u@bench.test,pass" -b "postgres-dir=127.0.0.1:$PD,u@bench.test,pass" \
	-n "$N" -size "$SIZE" -runs "$RUNS"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
