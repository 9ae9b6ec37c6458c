#!/usr/bin/env bash
# Relay throughput of "mssante serve" against Postfix 3.7 configured the same way, on this
# machine, same run: STARTTLS with a client certificate required (TLS 1.2, ECDHE-RSA-AES-GCM),
# queue fsynced before 250, delivery into a Maildir, queue and Maildir on the same disk.
# Load: Postfix's smtp-source (SESSIONS parallel sessions, MESSAGES messages of SIZE bytes,
# one connection per session, -d) through bench/relay's proxy, which gives both servers the same
# mutual-TLS client (smtp-source has no TLS) and measures the accept latency of each message
# (end of DATA to the 250 reply).
#
# usage: bench/relay/run.sh [SESSIONS=20] [MESSAGES=2000] [SIZE=10240] [ROUNDS=3]
# Prints accepted msg/s (smtp-source wall time) and end-to-end msg/s (until all are in the
# Maildir), medians over ROUNDS, the ratio ours/Postfix, and p99 accept latency.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${1:-20} M=${2:-2000} L=${3:-10240} R=${4:-3}

for b in postfix smtp-source; do
	command -v $b >/dev/null || [ -x /usr/sbin/$b ] || { echo "bench/relay: $b missing (scripts/install-peers.sh)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/relay: run as root (postfix -c)"; exit 1; }
PATH=$PATH:/usr/sbin

W=$(mktemp -d /var/tmp/mssante-relay-bench.XXXXXX)
chmod 755 "$W"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	postfix -c "$W/postfix/etc" stop >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

port() { "$W/relay" port; }
wait_port() {
	for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done
	echo "port $1 not open"; cat "$W/serve.log" "$W/proxy.log" "$W/postfix/maillog" 2>/dev/null | tail -20; exit 1
}
count() { find "$1" -type f 2>/dev/null | wc -l; }

echo "== building"
go build -o "$W/mssante" ./cmd/mssante
go build -o "$W/relay" ./bench/relay

SERVE_PORT=$(port) PF_PORT=$(port) PX_OURS=$(port) PX_PF=$(port)
SERVE_PORT=$SERVE_PORT "$W/relay" setup "$W"
"$W/mssante" serve --config "$W/serve.toml" 2>"$W/serve.log" &
pids+=($!)

# Postfix: inbound mutual TLS, virtual Maildir (as internal/peers configures it).
P=$W/postfix
mkdir -p "$P"/{etc,spool,data,vmail}
chown postfix:postfix "$P/data"; chmod 700 "$P/data"; chown mail:mail "$P/vmail"
cat >"$P/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $P/etc
queue_directory = $P/spool
data_directory = $P/data
maillog_file = $P/maillog
maillog_file_prefixes = $P
syslog_name = postfix-bench
myhostname = mx.x.mssante.test
mydomain = x.mssante.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
virtual_mailbox_domains = x.mssante.test
virtual_mailbox_base = $P/vmail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:$(id -u mail)
virtual_gid_maps = static:$(id -g mail)
virtual_minimum_uid = 1
smtpd_tls_cert_file = $W/pki/server.crt.pem
smtpd_tls_key_file = $W/pki/server.key.pem
smtpd_tls_CAfile = $W/pki/ca.pem
smtpd_tls_security_level = encrypt
smtpd_tls_req_ccert = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination
default_process_limit = 100
EOF
cat >"$P/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
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
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
postfix -c "$P/etc" start >/dev/null 2>&1 || { script -qc "postfix -c $P/etc check" /dev/null; exit 1; }

"$W/relay" proxy -listen 127.0.0.1:$PX_OURS -upstream 127.0.0.1:$SERVE_PORT -dir "$W" -out "$W/lat-ours" 2>>"$W/proxy.log" &
pids+=($!); PID_PX_OURS=$!
"$W/relay" proxy -listen 127.0.0.1:$PX_PF -upstream 127.0.0.1:$PF_PORT -dir "$W" -out "$W/lat-postfix" 2>>"$W/proxy.log" &
pids+=($!); PID_PX_PF=$!
for p in $SERVE_PORT $PF_PORT $PX_OURS $PX_PF; do wait_port "$p"; done

# round LABEL PROXY_PORT MAILDIR → "accepted_rate e2e_rate"
round() {
	local before t0 t1 t2 n
	before=$(count "$3")
	t0=$(date +%s.%N)
	smtp-source -s "$S" -m "$M" -l "$L" -d -f sender@a.mssante.test -t dr@x.mssante.test 127.0.0.1:"$2" >/dev/null 2>>"$W/smtp-source.log" || true
	t1=$(date +%s.%N)
	for _ in $(seq 1200); do
		n=$(( $(count "$3") - before ))
		[ "$n" -ge "$M" ] && break
		sleep 0.05
	done
	t2=$(date +%s.%N)
	n=$(( $(count "$3") - before ))
	awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$n" 'BEGIN{printf "%.1f %.1f %d\n", n/(b-a), n/(c-a), n}'
}

median() { sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

echo "== $R rounds: smtp-source -s $S -m $M -l $L -d, STARTTLS + client certificate, fsync, Maildir"
: >"$W/ours.txt"; : >"$W/postfix.txt"
for r in $(seq "$R"); do
	o=$(round ours $PX_OURS "$W/serve/maildir")
	p=$(round postfix $PX_PF "$P/vmail/Maildir")
	echo "round $r: mssante serve $o | postfix $p   (accepted/s end-to-end/s delivered)"
	echo "$o" >>"$W/ours.txt"; echo "$p" >>"$W/postfix.txt"
done
kill -TERM $PID_PX_OURS $PID_PX_PF; wait $PID_PX_OURS $PID_PX_PF 2>/dev/null || true
p99() { sort -n "$1" | awk '{v[NR]=$1} END{i=int(NR*0.99); if (i<1) i=1; printf "%.1f ms (n=%d)", v[i]/1000, NR}'; }

oa=$(cut -d' ' -f1 "$W/ours.txt" | median); pa=$(cut -d' ' -f1 "$W/postfix.txt" | median)
oe=$(cut -d' ' -f2 "$W/ours.txt" | median); pe=$(cut -d' ' -f2 "$W/postfix.txt" | median)
echo
printf "%-28s %14s %14s %8s\n" "median of $R rounds" "mssante serve" "postfix 3.7" "ratio"
printf "%-28s %14s %14s %8s\n" "accepted msg/s" "$oa" "$pa" "$(awk -v a="$oa" -v b="$pa" 'BEGIN{printf "%.2fx", a/b}')"
printf "%-28s %14s %14s %8s\n" "end-to-end msg/s" "$oe" "$pe" "$(awk -v a="$oe" -v b="$pe" 'BEGIN{printf "%.2fx", a/b}')"
printf "%-28s %14s %14s\n" "p99 accept latency" "$(p99 "$W/lat-ours")" "$(p99 "$W/lat-postfix")"
