#!/usr/bin/env bash
# Relay throughput of "mssante serve" against Postfix 3.7 configured the same way, on this
# machine, same run: STARTTLS with a client certificate required (TLS 1.2, ECDHE-RSA-AES-GCM),
# queue fsynced before 250, delivery into a Maildir, queue and Maildir on the same disk.
# Load: Postfix's smtp-source (SESSIONS parallel sessions, MESSAGES messages of SIZE bytes,
# one connection per session, -d) through bench/relay's proxy, which gives both servers the same
# mutual-TLS client (smtp-source has no TLS) and measures the accept latency of each message
# (end of DATA to the 250 reply).
#
# With STORES=1, "mssante serve" runs twice instead, as a node whose mail lives in the SQLite
# mailbox store ([mailbox] dir, file queue) and as a node on PostgreSQL ([store] backend =
# "postgres": queue and mailbox store in a throw-away PostgreSQL 15 cluster, fsync and
# synchronous_commit on), both beside Postfix in the same alternated rounds; end-to-end is
# then until the BAL holds them all (sqlite3 read-only; mssante bal show --config).
#
# usage: [STORES=1] bench/relay/run.sh [SESSIONS=20] [MESSAGES=2000] [SIZE=10240] [ROUNDS=3]
# Prints accepted msg/s (smtp-source wall time) and end-to-end msg/s (until all are
# delivered), medians over ROUNDS, the ratios, and p99 accept latency.
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
	echo "port $1 not open"; cat "$W"/serve-*.log "$W/proxy.log" "$W/postfix/maillog" 2>/dev/null | tail -20; exit 1
}
count() { find "$1" -type f 2>/dev/null | wc -l; }

echo "== building"
go build -o "$W/mssante" ./cmd/mssante
go build -o "$W/relay" ./bench/relay

PF_PORT=$(port) PX_PF=$(port)
if [ "${STORES:-0}" = 1 ]; then
	# A throw-away PostgreSQL cluster on a Unix socket, owned by the postgres user.
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
	install -d -o postgres -m 700 "$W/postgres"
	su postgres -s /bin/sh -c "$PGBIN/initdb -D $W/postgres/data -A trust -U postgres >/dev/null"
	su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $W/postgres/data -l $W/postgres/log -w -o \"-k $W/postgres -c listen_addresses='' -c max_connections=200\" start >/dev/null"
	cleanup_pg() { su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $W/postgres/data -m fast stop" >/dev/null 2>&1 || true; cleanup; }
	trap cleanup_pg EXIT
	SQLITE_PORT=$(port) PG_PORT=$(port)
	SQLITE_PORT=$SQLITE_PORT PG_PORT=$PG_PORT PG_DSN="host=$W/postgres user=postgres dbname=postgres" "$W/relay" setup "$W"
	names=(sqlite pg) ports=($SQLITE_PORT $PG_PORT) configs=("$W/serve-sqlite.toml" "$W/serve-pg.toml")
	labels=("node on SQLite" "node on PostgreSQL")
else
	SERVE_PORT=$(port)
	SERVE_PORT=$SERVE_PORT "$W/relay" setup "$W"
	names=(ours) ports=($SERVE_PORT) configs=("$W/serve.toml") labels=("mssante serve")
fi
for i in "${!names[@]}"; do
	"$W/mssante" serve --config "${configs[$i]}" 2>"$W/serve-${names[$i]}.log" &
	pids+=($!)
done

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

pxpids=()
pxports=()
for i in "${!names[@]}"; do
	px=$(port)
	"$W/relay" proxy -listen 127.0.0.1:$px -upstream 127.0.0.1:${ports[$i]} -dir "$W" -out "$W/lat-${names[$i]}" 2>>"$W/proxy.log" &
	pids+=($!); pxpids+=($!); pxports+=($px)
done
"$W/relay" proxy -listen 127.0.0.1:$PX_PF -upstream 127.0.0.1:$PF_PORT -dir "$W" -out "$W/lat-postfix" 2>>"$W/proxy.log" &
pids+=($!); pxpids+=($!)
for p in "${ports[@]}" $PF_PORT "${pxports[@]}" $PX_PF; do wait_port "$p"; done

# delivered NAME → how many messages the BAL dr holds on that server
delivered() {
	case $1 in
	ours) count "$W/serve/maildir" ;;
	postfix) count "$P/vmail/Maildir" ;;
	# Read-only and without a process start: the count must not slow the node it watches.
	sqlite) sqlite3 -readonly "file:$W/sqlite/mailbox/index.db?mode=ro" 'PRAGMA busy_timeout=5000; SELECT count(*) FROM message' 2>/dev/null | tail -1 || echo 0 ;;
	*) "$W/mssante" bal show dr@x.mssante.test --config "$W/serve-$1.toml" 2>/dev/null | awk '/^messages:/{print $2; f=1} END{if (!f) print 0}' ;;
	esac
}

# round NAME PROXY_PORT → "accepted_rate e2e_rate delivered"
round() {
	local before t0 t1 t2 n
	before=$(delivered "$1")
	t0=$(date +%s.%N)
	smtp-source -s "$S" -m "$M" -l "$L" -d -f sender@a.mssante.test -t dr@x.mssante.test 127.0.0.1:"$2" >/dev/null 2>>"$W/smtp-source.log" || true
	t1=$(date +%s.%N)
	for _ in $(seq 600); do
		n=$(( $(delivered "$1") - before ))
		[ "$n" -ge "$M" ] && break
		sleep 0.1
	done
	t2=$(date +%s.%N)
	n=$(( $(delivered "$1") - before ))
	awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$n" 'BEGIN{printf "%.1f %.1f %d\n", n/(b-a), n/(c-a), n}'
}

median() { sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

echo "== $R rounds: smtp-source -s $S -m $M -l $L -d, STARTTLS + client certificate, fsync; load average $(cut -d' ' -f1-3 /proc/loadavg)"
all=("${names[@]}" postfix) allports=("${pxports[@]}" $PX_PF) alllabels=("${labels[@]}" "postfix 3.7")
for n in "${all[@]}"; do : >"$W/$n.txt"; done
for r in $(seq "$R"); do
	line="round $r:"
	for i in "${!all[@]}"; do
		o=$(round "${all[$i]}" "${allports[$i]}")
		echo "$o" >>"$W/${all[$i]}.txt"
		line="$line ${alllabels[$i]} $o |"
	done
	echo "$line (accepted/s end-to-end/s delivered)"
done
kill -TERM "${pxpids[@]}"; wait "${pxpids[@]}" 2>/dev/null || true
p99() { sort -n "$1" | awk '{v[NR]=$1} END{i=int(NR*0.99); if (i<1) i=1; printf "%.1f ms (n=%d)", v[i]/1000, NR}'; }
med() { cut -d' ' -f"$2" "$W/$1.txt" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a/b}'; }

echo
echo "median of $R rounds, load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in "${!all[@]}"; do
	n=${all[$i]}
	printf "%-20s accepted %7s msg/s (%s of postfix)  end-to-end %7s msg/s (%s)  p99 accept %s\n" "${alllabels[$i]}" \
		"$(med "$n" 1)" "$(ratio "$(med "$n" 1)" "$(med postfix 1)")" "$(med "$n" 2)" "$(ratio "$(med "$n" 2)" "$(med postfix 2)")" "$(p99 "$W/lat-$n")"
done
if [ "${STORES:-0}" = 1 ]; then
	echo "node on PostgreSQL / node on SQLite: accepted $(ratio "$(med pg 1)" "$(med sqlite 1)"), end-to-end $(ratio "$(med pg 2)" "$(med sqlite 2)")"
fi
