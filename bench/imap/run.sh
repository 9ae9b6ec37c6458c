#!/usr/bin/env bash
# IMAP benchmark: our server (transport/imapd over the SQLite mailbox store) against a real,
# throw-away Dovecot (Maildir) in the same run, on the same disk, same client (bench/imap/load):
# APPEND N messages of SIZE bytes (one connection, each fsynced by the server), FETCH them all
# (BODY.PEEK[]), SEARCH BODY (reads every message) and SEARCH HEADER, the servers taking turns
# so both see the same machine load. Prints both figures and
# the ratio ours/Dovecot (throughput) or Dovecot/ours (time), so > 1 means we are faster.
#
# bench/imap/run.sh scale: what one command costs in a large folder. Folders of SMALL and
# LARGE messages (and IDLE_N for the fan-out) are built beforehand, the same messages on both
# sides (bench/imap/fill: our store through the mailbox API, each message fsynced as a
# delivery; Dovecot as Maildir files imported into its mdbox format, or with
# DOVECOT_STORE=maildir kept as Maildir and indexed on the first SELECT). Then, servers taking
# turns, index in sync: SELECT, FETCH of the last 50 headers, STORE on one message, the FETCH
# after it (bench/imap/scale), medians of RUNS, ratios ours/Dovecot and LARGE/SMALL; then the
# IDLE fan-out: SESSIONS sessions IDLE on the IDLE_N folder, one APPEND, time until the median
# and the last session hear of it, and the server's memory resting and at its peak.
#
# Scale runs the commands twice, against our server with [mailbox] flag_sync = "full" then
# "normal" (ORDER="normal full" swaps them), one server at a time, and prints beside each the
# cost of one fsync on the disk of the run.
#
# Needs dovecot-core and dovecot-imapd (scripts/install-peers.sh) and root (Dovecot drops to
# the "mail" user). CPUPROFILE=/path/prefix writes CPU profiles of our servers to
# prefix.full and prefix.normal (go tool pprof).
# Usage: bench/imap/run.sh [N] [SIZE] [RUNS]    (defaults 10000 20480 3)
#        bench/imap/run.sh scale [SMALL] [LARGE] [IDLE_N] [SESSIONS] [RUNS]
#                                         (defaults 1000 100000 10000 1000 5;
#                                          SESSIONS 0: no fan-out)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=append
if [ "${1:-}" = scale ]; then
	MODE=scale
	shift
	SMALL=${1:-1000}
	LARGE=${2:-100000}
	IDLE_N=${3:-10000}
	SESSIONS=${4:-1000}
	RUNS=${5:-5}
else
	N=${1:-10000}
	SIZE=${2:-20480}
	RUNS=${3:-3}
fi
DOVECOT=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$DOVECOT" ] || { echo "dovecot not installed: scripts/install-peers.sh" >&2; exit 1; }

W=$(mktemp -d /var/tmp/mssante-imap-bench.XXXXXX)   # one disk for both servers
chmod 755 "$W"                                       # Dovecot's auth and mail users read below it
OURS_PID=""
cleanup() {
	[ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
	[ -f "$W/dovecot/run/master.pid" ] && kill "$(cat "$W/dovecot/run/master.pid")" 2>/dev/null || true
	sleep 0.5
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PD=$(freeport); PO=$(freeport); PN=$(freeport)

go build -o "$W/imapserve" ./bench/imap/imapserve
go build -o "$W/load" ./bench/imap/load
go build -o "$W/fill" ./bench/imap/fill
go build -o "$W/scale" ./bench/imap/scale

# --- Dovecot: Maildir, plain IMAP on loopback, default fsync (mail_fsync = optimized)
mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/dovecot/mail"
chown mail:mail "$W/dovecot/mail"
echo 'testuser:{PLAIN}pass::::::' > "$W/dovecot/users"
cat > "$W/dovecot/dovecot.conf" <<CONF
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = mssante-bench-$PD
log_path = $W/dovecot/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN $W/dovecot/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$W/dovecot/mail/%u
}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
# room for the IDLE fan-out's sessions, all of one user from one address
default_process_limit = 2000
default_client_limit = 4000
protocol imap {
  mail_max_userip_connections = 2000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PD
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
if [ "$MODE" = scale ]; then
	# Index in sync. DOVECOT_STORE=mdbox (the default here): the Maildir is imported into
	# Dovecot's own format, whose flags live in its index. maildir: Dovecot trusts its index
	# instead of re-reading a folder whose directory changed (each STORE renames a file).
	DOVECOT_STORE=${DOVECOT_STORE:-mdbox}
	echo "maildir_very_dirty_syncs = yes" >> "$W/dovecot/dovecot.conf"
	if [ "$DOVECOT_STORE" = mdbox ]; then
		sed -i 's|^mail_location = .*|mail_location = mdbox:~/mdbox|' "$W/dovecot/dovecot.conf"
	fi
	echo "== building folders of $SMALL, $IDLE_N and $LARGE messages on both sides"
	"$W/fill" -store "$W/ours" -bal testuser@bench.test -maildir "$W/dovecot/mail/testuser/Maildir" \
		-folders "f$SMALL:$SMALL,f$IDLE_N:$IDLE_N,f$LARGE:$LARGE" -workers 8
	chown -R mail:mail "$W/dovecot/mail"
fi
"$DOVECOT" -c "$W/dovecot/dovecot.conf"
if [ "$MODE" = scale ] && [ "$DOVECOT_STORE" = mdbox ]; then
	sleep 0.5
	t=$(date +%s)
	doveadm -c "$W/dovecot/dovecot.conf" import -u testuser maildir:~/Maildir "" all
	echo "fill: Maildir imported into Dovecot's mdbox in $(( $(date +%s) - t )) s"
fi

# The fill and the import leave hundreds of MB for the kernel to write back: written now, so
# that neither side's first fsyncs wait for them.
sync

# fsync_cost prints what an fsync of a 32 KB append costs on this disk now (median of 100):
# the floor of a STORE whose change is fsynced before its OK.
fsync_cost() {
	python3 - "$W" <<'PY'
import os, statistics, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
ts = []
for _ in range(100):
    os.write(fd, b"\0" * 32768)
    t = time.perf_counter()
    os.fsync(fd)
    ts.append(time.perf_counter() - t)
os.close(fd)
os.remove(p)
print("fsync of a 32 KB append on this disk: median %.2f ms" % (statistics.median(ts) * 1000))
PY
}

# start_ours MODE PORT: our server on the store, LOGIN allowed on loopback without TLS like
# Dovecot above; OURS_PID is its process.
start_ours() {
	"$W/imapserve" -dir "$W/ours" -addr "127.0.0.1:$2" -users testuser@bench.test:pass -max-conns 5000 \
		-flag-sync "$1" ${CPUPROFILE:+-cpuprofile "$CPUPROFILE.$1"} > "$W/ours-$1.log" 2>&1 &
	OURS_PID=$!
	for _ in $(seq 50); do
		if (echo > /dev/tcp/127.0.0.1/$PD) 2>/dev/null && (echo > /dev/tcp/127.0.0.1/$2) 2>/dev/null; then break; fi
		sleep 0.1
	done
}

stop_ours() {
	kill "$OURS_PID" 2>/dev/null || true
	wait "$OURS_PID" 2>/dev/null || true
	OURS_PID=""
}

if [ "$MODE" = scale ]; then
	# Two servers of ours in turn on the same store, one at a time: flag changes fsynced
	# ([mailbox] flag_sync = "full", the default) and not ("normal"), as Dovecot's are not
	# (mail_fsync = optimized). ORDER="normal full" runs them the other way round; the IDLE
	# fan-out runs with the first.
	first=1
	for mode in ${ORDER:-full normal}; do
		port=$PO
		[ "$mode" = normal ] && port=$PN
		start_ours "$mode" "$port"
		echo "== SELECT, FETCH last 50, STORE one in f$SMALL and f$LARGE, $RUNS runs (medians), servers taking turns; Dovecot $DOVECOT_STORE; ours with flag_sync = $mode; disk: $(df --output=source "$W" | tail -1)"
		fsync_cost
		idle=""
		sessions=0
		if [ "$first" = 1 ] && [ "$SESSIONS" -gt 0 ]; then
			idle="f$IDLE_N"
			sessions=$SESSIONS
		fi
		"$W/scale" -a "dovecot=127.0.0.1:$PD,testuser,pass" -a-proc comm:imap \
			-b "ours-$mode=127.0.0.1:$port,testuser@bench.test,pass" -b-proc "pid:$OURS_PID" \
			-folders "f$SMALL,f$LARGE" -runs "$RUNS" -idle-folder "$idle" -sessions "$sessions"
		stop_ours
		first=0
	done
	exit 0
fi

start_ours full "$PO"
echo "== $N messages of $SIZE bytes, $RUNS runs (medians), servers taking turns; disk: $(df --output=source "$W" | tail -1)"
"$W/load" -a "dovecot=127.0.0.1:$PD,testuser,pass" -b "ours=127.0.0.1:$PO,testuser@bench.test,pass" -n "$N" -size "$SIZE" -runs "$RUNS"
echo "(ratio = ours/dovecot for msg/s, dovecot/ours for ms: > 1 means ours faster; goal >= 0.8x)"
