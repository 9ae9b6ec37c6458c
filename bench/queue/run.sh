#!/usr/bin/env bash
# The delivery queue of the connector (transport/queue + connector.Delivery) against Postfix 3.7's,
# on this machine, same run, both delivering to the same SMTP sink (bench/queue sink: STARTTLS,
# client certificate required, messages discarded) over mutual TLS with sessions reused
# (Postfix: smtp_tls_connection_reuse through tlsproxy).
#
# Pass: N messages of 2.4 KB wait in a deferred queue (one failed attempt each), then one pass
# delivers them all. Postfix: queued with defer_transports = smtp through smtp-source, then
# defer_transports cleared, postfix reload and postqueue -f, timed until its queue is empty.
# Ours: queued with the queue API, one failed attempt, then Open and Run, timed until empty.
# Restart, cold (the spool's files evicted from the page cache): ours, Open of our spool with N
# queued after a clean stop (index) and after a crash (no index), until Open returns (the queue
# accepts and delivers; after a crash the messages are read in the background) and, after the
# crash, until every message is read, and until a relay-style Commit (a new message with a
# RedeliveryKey, fsynced) made right after Open returns is answered. Postfix, with the same N
# in its deferred queue: postfix stop, then postfix start until its SMTP server answers 220
# (its queue manager reads deferred messages as it gets to them).
# Enqueue: CPU per enqueue (one after the other) and a burst of 2,000 enqueues from 20
# goroutines with B messages queued and not due, Run running.
#
# usage: bench/queue/run.sh [SIZES="1000 10000"] [ROUNDS=3] [BACKLOGS="1000 10000 50000"] [PASS=1]
# (PASS=0: the restarts only, no pass)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${1:-"1000 10000"} R=${2:-3} BACKLOGS=${3-"1000 10000 50000"} PASS=${4:-1} # BACKLOGS "" for none

for b in postfix smtp-source postqueue postconf; do
	command -v $b >/dev/null || [ -x /usr/sbin/$b ] || { echo "bench/queue: $b missing (scripts/install-peers.sh)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/queue: run as root (postfix -c)"; exit 1; }
PATH=$PATH:/usr/sbin

W=$(mktemp -d /var/tmp/mssante-queue-bench.XXXXXX)
chmod 755 "$W"
pids=()
P=$W/postfix
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	postfix -c "$P/etc" stop >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

echo "== building"
go build -o "$W/q" ./bench/queue
"$W/q" setup "$W"
SINK=$("$W/q" port) PF_PORT=$("$W/q" port)
"$W/q" sink -listen 127.0.0.1:$SINK -dir "$W" 2>"$W/sink.log" &
pids+=($!)
chmod 644 "$W"/pki/*.pem

mkdir -p "$P"/{etc,spool,data}
chown postfix:postfix "$P/data"; chmod 700 "$P/data"
cat >"$P/etc/main.cf" <<CF
compatibility_level = 3.6
config_directory = $P/etc
queue_directory = $P/spool
data_directory = $P/data
maillog_file = $P/maillog
maillog_file_prefixes = $P
syslog_name = postfix-qbench
myhostname = mx.a.mssante.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$SINK
defer_transports = smtp
smtp_tls_security_level = encrypt
smtp_tls_cert_file = $W/pki/client.crt.pem
smtp_tls_key_file = $W/pki/client.key.pem
smtp_tls_CAfile = $W/pki/ca.pem
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_connection_reuse = yes
default_process_limit = 100
CF
cat >"$P/etc/master.cf" <<CF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
tlsproxy  unix  -       -       n       -       0       tlsproxy
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
postfix -c "$P/etc" start >/dev/null 2>&1 || { script -qc "postfix -c $P/etc check" /dev/null; exit 1; }
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PF_PORT) 2>/dev/null && break; sleep 0.1; done

count() { find "$@" -type f 2>/dev/null | wc -l; }
median() { sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# postfix_restart → seconds from postfix start, its spool's files out of the page cache, until
# its SMTP server answers 220
postfix_restart() {
	local t0 t1 line
	postfix -c "$P/etc" stop >/dev/null 2>&1
	while [ -e "$P/spool/pid/master.pid" ] && kill -0 "$(cat "$P/spool/pid/master.pid" 2>/dev/null)" 2>/dev/null; do sleep 0.05; done
	sync
	"$W/q" evict "$P/spool"
	t0=$(date +%s.%N)
	postfix -c "$P/etc" start >/dev/null 2>&1
	for _ in $(seq 6000); do
		line=$( (exec 3<>/dev/tcp/127.0.0.1/$PF_PORT && read -r -t 5 l <&3 && echo "$l" && printf 'QUIT\r\n' >&3) 2>/dev/null || true)
		[[ $line == 220* ]] && break
		sleep 0.01
	done
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", b-a}'
}

# postfix_pass N → seconds of the flush of N deferred messages, and of a restart with them
# queued (0 for the flush when PASS=0: the queue is deleted instead)
postfix_pass() {
	postconf -c "$P/etc" -e 'defer_transports = smtp'
	postfix -c "$P/etc" reload >/dev/null 2>&1
	smtp-source -s 20 -m "$1" -l 2400 -f bal@a.mssante.test -t dr@x.mssante.test 127.0.0.1:$PF_PORT >/dev/null 2>>"$W/smtp-source.log" || true
	for _ in $(seq 6000); do
		[ "$(count "$P/spool/deferred")" -ge "$1" ] && [ "$(count "$P/spool/incoming" "$P/spool/active")" = 0 ] && break
		sleep 0.1
	done
	local t0 t1 left restart
	restart=$(postfix_restart)
	if [ "$PASS" = 0 ]; then
		postsuper -c "$P/etc" -d ALL >/dev/null 2>&1
		echo "0 $restart"
		return
	fi
	postconf -c "$P/etc" -e 'defer_transports ='
	postfix -c "$P/etc" reload >/dev/null 2>&1
	sleep 2 # the new qmgr is up: the flush alone is timed
	t0=$(date +%s.%N)
	postqueue -c "$P/etc" -f
	for _ in $(seq 36000); do
		left=$(count "$P/spool/incoming" "$P/spool/active" "$P/spool/deferred")
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	[ "$left" = 0 ] || { echo "postfix: $left messages left" >&2; tail -3 "$P/maillog" >&2; }
	awk -v a="$t0" -v b="$t1" -v r="$restart" 'BEGIN{printf "%.3f %s\n", b-a, r}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2fx", a/b; else print "-"}'; }
echo "== pass over N deferred messages, $R rounds, seconds (restart: cold, until the queue accepts;"
echo "   ours after a clean stop and after a crash, then until every message is read after the crash)"
echo "   commit: until a relay-style Commit (RedeliveryKey, fsynced) made right after Open returns)"
printf "%-7s %9s %9s %7s | %13s %13s %13s %14s %9s %9s | %13s %13s %9s %9s\n" N ours postfix ratio "ours clean" "ours crash" \
	"crash, read" "postfix start" clean/pf crash/pf "clean, commit" "crash, commit" clean/pf crash/pf
P_ONLY=(); [ "$PASS" = 0 ] && P_ONLY=(-restart-only)
for n in $SIZES; do
	: >"$W/o"; : >"$W/p"; : >"$W/rc"; : >"$W/rx"; : >"$W/rl"; : >"$W/pr"; : >"$W/cc"; : >"$W/xc"
	for _ in $(seq "$R"); do
		out=$("$W/q" pass -n "$n" -spool "$W/spool" -sink 127.0.0.1:$SINK -dir "$W" "${P_ONLY[@]}")
		read -r _ rc rx o rl cc xc <<<"$out"
		echo "$o" >>"$W/o"; echo "$rc" >>"$W/rc"; echo "$rx" >>"$W/rx"; echo "$rl" >>"$W/rl"
		echo "$cc" >>"$W/cc"; echo "$xc" >>"$W/xc"
		read -r pp pr <<<"$(postfix_pass "$n")"
		echo "$pp" >>"$W/p"; echo "$pr" >>"$W/pr"
		echo "  round: ours $o s, postfix $pp s; restart ours clean $rc s, crash $rx s (all read $rl s; a relay commit answered at $cc s and $xc s), postfix $pr s (load $(cut -d' ' -f1 /proc/loadavg))"
	done
	o=$(median <"$W/o") p=$(median <"$W/p") rc=$(median <"$W/rc") rx=$(median <"$W/rx") pr=$(median <"$W/pr")
	xc=$(median <"$W/xc") cc=$(median <"$W/cc")
	printf "%-7s %9s %9s %7s | %13s %13s %13s %14s %9s %9s | %13s %13s %9s %9s\n" "$n" "$o" "$p" "$(ratio "$o" "$p")" \
		"$rc" "$rx" "$(median <"$W/rl")" "$pr" "$(ratio "$rc" "$pr")" "$(ratio "$rx" "$pr")" \
		"$cc" "$xc" "$(ratio "$cc" "$pr")" "$(ratio "$xc" "$pr")"
done
rm -rf "$W/spool"
echo "postfix: $(grep -c 'status=sent' "$P/maillog" || true) sent, $(grep -c 'status=bounced' "$P/maillog" || true) bounced"

echo
echo "== enqueue with B queued (not due), Run running; $R rounds"
printf "%-7s %18s %22s\n" B "CPU ms/enqueue" "burst of 2000, msg/s"
for b in $BACKLOGS; do
	: >"$W/c"; : >"$W/b"
	for _ in $(seq "$R"); do
		out=$("$W/q" enqueue -backlog "$b" -n 2000 -spool "$W/spool")
		read -r _ c r <<<"$out"
		echo "$c" >>"$W/c"; echo "$r" >>"$W/b"
	done
	printf "%-7s %18s %22s\n" "$b" "$(median <"$W/c")" "$(median <"$W/b")"
	rm -rf "$W/spool"
done
