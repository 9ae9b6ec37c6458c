#!/usr/bin/env bash
# IMAP compliance: Dovecot's imaptest scripted tests (its src/tests folder: one file per test
# group, commands and the replies RFC 3501 and the extensions expect) against our IMAP server
# (bench/imap/imapserve) on each mailbox store: SQLite (-dir), PostgreSQL (-pg, bodies in the
# database) and PostgreSQL with bodies in a folder (-blobs dir:), and against Debian's Dovecot
# 2.3 (Maildir) as the reference. Each test group runs alone (imaptest test=<file>), so that
# the table can say which groups pass, fail or are skipped (a group that needs a capability
# the server does not announce); then it names the groups whose result differs between the
# stores, which must be none.
#
# imaptest is not packaged by Debian. Give the script either an imaptest binary (its tests are
# looked for in the tests folder beside it, or in IMAPTEST_TESTS) or a clone of
# https://github.com/dovecot/imaptest (a work tree or a bare repository): it is then built at
# commit $IMAPTEST_COMMIT, the newest that builds against Debian bookworm's dovecot-dev 2.3.19,
# into $IMAPTEST_CACHE (reused by the next run). Building needs dovecot-dev, autoconf,
# automake, libtool, pkg-config, make and a C compiler.
#
# Needs root (Dovecot drops to the "mail" user; the PostgreSQL cluster runs as "postgres"),
# dovecot-core, dovecot-imapd and postgresql (scripts/apt-packages.txt).
# With STRESS=SECS, each server then takes imaptest's stress mode for SECS seconds: CLIENTS
# (default 10) sessions on INBOX sending random commands (imaptest's default mix: APPEND,
# FETCH, STORE, EXPUNGE, SEARCH…) while imaptest tracks the folder's state and reports every
# reply that contradicts it or the protocol; the table gives the commands run and the errors.
# IMAPTEST_ARGS adds settings to the stress runs (not checkpoint=: imaptest 924f619 then
# fails an assertion of its own, against Dovecot too).
# Usage: bench/imap/imaptest.sh IMAPTEST_BINARY_OR_REPOSITORY [GROUP...]
#        (no GROUP: every test group; KEEP=1 keeps the work folder with each run's output;
#        VERBOSE=1 prints the failures; ONLY="postgres two-nodes…" runs those servers and
#        sqlite, of dovecot sqlite postgres postgres-dir two-nodes)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAPTEST_COMMIT=${IMAPTEST_COMMIT:-924f619}
IMAPTEST_CACHE=${IMAPTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mssante-imaptest}
SRC=${1:-}
[ $# -gt 0 ] && shift

absent() {
	cat >&2 <<EOF
imaptest.sh: no imaptest${SRC:+ at $SRC}. Debian has no package for it; on a machine with
network access:
    git clone https://github.com/dovecot/imaptest /path/to/imaptest
    apt-get install -y dovecot-dev autoconf automake libtool pkg-config
    bench/imap/imaptest.sh /path/to/imaptest
(the clone is built at commit $IMAPTEST_COMMIT), or give the path of an imaptest binary
built elsewhere against the installed Dovecot.
EOF
	exit 2
}

# build REPO: build imaptest at $IMAPTEST_COMMIT from a clone into $IMAPTEST_CACHE/$IMAPTEST_COMMIT.
build() {
	local repo=$1 out=$IMAPTEST_CACHE/$IMAPTEST_COMMIT
	if [ -x "$out/src/imaptest" ]; then
		echo "$out/src/imaptest"
		return
	fi
	for p in autoreconf libtoolize make cc; do
		command -v "$p" >/dev/null || { echo "imaptest.sh: building imaptest needs $p (autoconf automake libtool make gcc)" >&2; exit 2; }
	done
	[ -f /usr/include/dovecot/imap-parser.h ] || { echo "imaptest.sh: building imaptest needs dovecot-dev" >&2; exit 2; }
	rm -rf "$out" && mkdir -p "$out"
	git -C "$repo" archive "$IMAPTEST_COMMIT" | tar -x -C "$out"
	# The version is taken from git, which an archive lacks.
	echo "0.0.0-$IMAPTEST_COMMIT" > "$out/version"
	# Debian's security update of 2.3.19 (deb12u7) gave imap_parser_create a fourth argument,
	# the parser's limits (NULL: none), as Dovecot 2.4 has it.
	if grep -q 'imap_parser_params \*params' /usr/include/dovecot/imap-parser.h; then
		sed -i 's/imap_parser_create(\([^;]*\), (size_t)-1)/imap_parser_create(\1, (size_t)-1, NULL)/' \
			"$out"/src/commands.c "$out"/src/imap-client.c "$out"/src/test-parser.c
	fi
	(cd "$out" && ./autogen.sh && ./configure --with-dovecot=/usr/lib/dovecot && make -j2) \
		> "$out.log" 2>&1 || { echo "imaptest.sh: building imaptest failed, see $out.log" >&2; rm -rf "$out"; exit 2; }
	echo "$out/src/imaptest"
}

if [ -z "$SRC" ] || [ ! -e "$SRC" ]; then
	absent
elif [ -f "$SRC" ] && [ -x "$SRC" ]; then
	IMAPTEST=$SRC
	TESTS=${IMAPTEST_TESTS:-$(dirname "$SRC")/tests}
elif git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$SRC" cat-file -e "$IMAPTEST_COMMIT^{commit}" 2>/dev/null ||
		{ echo "imaptest.sh: $SRC has no commit $IMAPTEST_COMMIT (IMAPTEST_COMMIT)" >&2; exit 2; }
	IMAPTEST=$(build "$SRC")
	TESTS=$(dirname "$IMAPTEST")/tests
else
	absent
fi
[ -d "$TESTS" ] || { echo "imaptest.sh: no test folder $TESTS (IMAPTEST_TESTS)" >&2; exit 2; }
export LD_LIBRARY_PATH=/usr/lib/dovecot${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$IMAPTEST" --help >/dev/null 2>&1 || [ $? -ne 127 ] || { echo "imaptest.sh: $IMAPTEST does not run" >&2; exit 2; }

GROUPS_RUN=("$@")
if [ ${#GROUPS_RUN[@]} -eq 0 ]; then
	for f in "$TESTS"/*; do
		[ -f "$f" ] && [ "${f%.mbox}" = "$f" ] && GROUPS_RUN+=("$(basename "$f")")
	done
fi

DOVECOT=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$DOVECOT" ] || { echo "imaptest.sh: dovecot not installed (scripts/install-peers.sh)" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/postgres" ] || { echo "imaptest.sh: PostgreSQL not installed (Debian package postgresql)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "imaptest.sh: run as root (Dovecot and PostgreSQL drop to their users)" >&2; exit 2; }

W=$(mktemp -d /var/tmp/mssante-imaptest.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$W/dovecot/run/master.pid" ] && kill "$(cat "$W/dovecot/run/master.pid")" 2>/dev/null || true
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
	sleep 0.5
	[ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PD=$(freeport); PS=$(freeport); PP=$(freeport); PB=$(freeport); P2=$(freeport)

# --- Dovecot 2.3, Maildir, plain IMAP on loopback (as bench/imap/run.sh)
mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/dovecot/mail"
chown mail:mail "$W/dovecot/mail"
printf 'testuser:{PLAIN}pass::::::\ntestuser2:{PLAIN}pass::::::\n' > "$W/dovecot/users"
cat > "$W/dovecot/dovecot.conf" <<CONF
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = mssante-imaptest-$PD
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
protocol imap {
  mail_max_userip_connections = 1000
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
"$DOVECOT" -c "$W/dovecot/dovecot.conf"

# --- a throw-away PostgreSQL cluster (Unix socket only), a database per server on it
mkdir "$W/pg" && chown postgres: "$W/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W/pg'
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w start >/dev/null
for db in imap imapdir imap2; do
	runuser -u postgres -- "$PGBIN/psql" -h "$W/pg" -U postgres -qc "CREATE DATABASE $db" >/dev/null
done

# --- ours on each store; "two-nodes" is two servers on one PostgreSQL database, at 127.0.0.1
# and 127.0.0.2 on the same port: imaptest reaches them through a host name with both
# addresses (in a mount namespace of its own where /etc/hosts says so), and spreads its
# sessions over them in turn, so a test group of several sessions sees one node's changes
# from the other (EXISTS, EXPUNGE, FLAGS across nodes).
go build -o "$W/imapserve" ./bench/imap/imapserve
U=testuser@bench.test:pass,testuser2@bench.test:pass
PGDSN="host=$W/pg user=postgres sslmode=disable dbname"
serve() { # NAME ADDRESS FLAGS...
	local name=$1 addr=$2
	shift 2
	"$W/imapserve" -v -addr "$addr" -users "$U" "$@" > "$W/$name.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do grep -q '^ready' "$W/$name.log" && return; sleep 0.1; done
	echo "imaptest.sh: $name did not start, see $W/$name.log" >&2
	KEEP=1
	exit 1
}
serve sqlite "127.0.0.1:$PS" -dir "$W/sqlite"
serve postgres "127.0.0.1:$PP" -pg "$PGDSN=imap"
serve postgres-dir "127.0.0.1:$PB" -pg "$PGDSN=imapdir" -blobs "dir:$W/blobs"
serve node-a "127.0.0.1:$P2" -pg "$PGDSN=imap2"
serve node-b "127.0.0.2:$P2" -pg "$PGDSN=imap2"
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PD) 2>/dev/null && break; sleep 0.1; done
printf '127.0.0.1 localhost\n127.0.0.1 two-nodes\n127.0.0.2 two-nodes\n' > "$W/hosts"

# SERVERS: name, host, port, user, second user of each server imaptest runs against
SERVERS=(
	"dovecot 127.0.0.1 $PD testuser testuser2"
	"sqlite 127.0.0.1 $PS testuser@bench.test testuser2@bench.test"
	"postgres 127.0.0.1 $PP testuser@bench.test testuser2@bench.test"
	"postgres-dir 127.0.0.1 $PB testuser@bench.test testuser2@bench.test"
	"two-nodes two-nodes $P2 testuser@bench.test testuser2@bench.test"
)
if [ -n "${ONLY:-}" ]; then
	keep=()
	for srv in "${SERVERS[@]}"; do
		case " sqlite $ONLY " in *" ${srv%% *} "*) keep+=("$srv") ;; esac
	done
	SERVERS=("${keep[@]}")
fi
# imaptest_at HOST ARGS...: imaptest against HOST, a name only this process's namespace knows
# when it is two-nodes. A hung server is cut after $LIMIT seconds.
imaptest_at() {
	local host=$1
	shift
	if [ "$host" = two-nodes ]; then
		timeout "$LIMIT" unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$W/hosts" \
			"$IMAPTEST" host="$host" "$@"
	else
		timeout "$LIMIT" "$IMAPTEST" host="$host" "$@"
	fi
}

# run NAME HOST PORT USER USER2: every test group against one server; writes $W/NAME.result,
# one "group pass|fail|skip" line each, and imaptest's output in $W/out/NAME/.
run() {
	local name=$1 host=$2 port=$3 user=$4 user2=$5 g out
	mkdir -p "$W/out/$name"
	: > "$W/$name.result"
	for g in "${GROUPS_RUN[@]}"; do
		out=$W/out/$name/$g.out
		# imaptest exits non-zero when a group fails
		mkdir -p "$W/raw/$name/$g"
		(cd "$W/raw/$name/$g" && LIMIT=120 imaptest_at "$host" port="$port" user="$user" user2="$user2" pass=pass \
			test="$TESTS/$g" rawlog > "$out" 2>&1) || true
		if grep -q '^1 test groups: 0 failed, 1 skipped' "$out"; then
			echo "$g skip" >> "$W/$name.result"
		elif grep -q '^1 test groups: 0 failed' "$out" && grep -q '^base protocol: 0/0 ' "$out" &&
			grep -q '^extensions: 0/0 ' "$out"; then
			# this imaptest does not count a group it skips for a missing capability: no
			# command ran
			echo "$g skip" >> "$W/$name.result"
		elif grep -q '^1 test groups: 0 failed' "$out"; then
			echo "$g pass" >> "$W/$name.result"
		else
			echo "$g fail" >> "$W/$name.result"
		fi
	done
}
list() { awk -v r="$2" '$2 == r { printf "%s%s", s, $1; s = " " }' "$W/$1.result"; }

echo "== imaptest $IMAPTEST_COMMIT, ${#GROUPS_RUN[@]} test groups from $TESTS, each alone"
for srv in "${SERVERS[@]}"; do
	# shellcheck disable=SC2086
	run $srv
done
# checks NAME: the commands imaptest checked in every group, and those that failed ("base
# protocol: F/N individual commands failed", the same for extensions)
checks() {
	cat "$W/out/$1"/*.out | awk '/^(base protocol|extensions): [0-9]+\/[0-9]+ / {
		split($0 ~ /^base/ ? $3 : $2, a, "/"); f += a[1]; n += a[2] } END { printf "%d/%d", f, n }'
}
printf '%-13s %6s %6s %7s %9s  %s\n' server passed failed skipped checks "failed groups"
for srv in "${SERVERS[@]}"; do
	name=${srv%% *}
	printf '%-13s %6d %6d %7d %9s  %s\n' "$name" "$(grep -c ' pass$' "$W/$name.result" || true)" \
		"$(grep -c ' fail$' "$W/$name.result" || true)" "$(grep -c ' skip$' "$W/$name.result" || true)" \
		"$(checks "$name")" "$(list "$name" fail)"
done
echo "(checks: the commands whose replies imaptest checked, failed/run, summed over the groups)"
echo "skipped by ours (capability not announced): $(list sqlite skip)"
[ -f "$W/dovecot.result" ] && echo "skipped by Dovecot: $(list dovecot skip)"
DIFF=0
for name in postgres postgres-dir two-nodes; do
	[ -f "$W/$name.result" ] || continue
	if ! d=$(diff "$W/sqlite.result" "$W/$name.result"); then
		echo "DIFFERENT, sqlite against $name:"
		echo "$d" | sed -n 's/^[<>] /  /p'
		DIFF=1
	fi
done
[ "$DIFF" = 0 ] && echo "same result on every store"

# The transcripts too: in each group that passed on SQLite, what the server answered to each
# session (imaptest's rawlog, its "I:" lines, without the time stamps and the UIDVALIDITY
# values) must be the same byte for byte on every store. (What the client sent is left out:
# imaptest pipelines, so where its lines fall among the replies depends on timing.)
transcript() { sed -n -E 's/^[0-9.]+ I: //p' "$1" | sed -E 's/(APPENDUID|COPYUID|UIDVALIDITY) [0-9]+/\1 N/g'; }
for name in postgres postgres-dir two-nodes; do
	[ -f "$W/$name.result" ] || continue
	differ=()
	for g in $(list sqlite pass); do
		same=1
		for f in "$W/raw/sqlite/$g"/rawlog.*; do
			[ -e "$f" ] || continue
			o=$W/raw/$name/$g/${f##*/}
			if ! [ -f "$o" ] || ! cmp -s <(transcript "$f") <(transcript "$o"); then same=0; fi
		done
		[ "$(ls "$W/raw/sqlite/$g" | wc -l)" = "$(ls "$W/raw/$name/$g" | wc -l)" ] || same=0
		[ "$same" = 1 ] || differ+=("$g")
	done
	if [ ${#differ[@]} -eq 0 ]; then
		echo "replies of $name: the same as sqlite's in every group that passed"
	else
		echo "REPLIES DIFFER, sqlite against $name: ${differ[*]}"
		DIFF=1
		if [ -n "${VERBOSE:-}" ]; then
			for g in "${differ[@]}"; do
				for f in "$W/raw/sqlite/$g"/rawlog.*; do
					echo "--- $g ${f##*/}: sqlite <, $name >"
					diff <(transcript "$f") <(transcript "$W/raw/$name/$g/${f##*/}" 2>/dev/null) | head -20 | cut -c1-300 || true
				done
			done
		fi
	fi
done

# stress NAME HOST PORT USER: imaptest's stress mode on INBOX; prints one table row. imaptest
# ends with "Totals:", the command names, two lines of their shares, and the count of each.
BAD='(Error|Panic|Fatal):'
stress() {
	local name=$1 host=$2 port=$3 user=$4 out=$W/out/$1.stress
	# shellcheck disable=SC2086
	LIMIT=$((STRESS + 120)) imaptest_at "$host" port="$port" user="$user" pass=pass \
		mbox="$TESTS/default.mbox" clients="${CLIENTS:-10}" secs="$STRESS" ${IMAPTEST_ARGS:-} \
		> "$out" 2>&1 || true
	printf '%-13s %8s %8s %6d  %s\n' "$name" \
		"$(awk '/^Totals:/ { t = NR } t && NR == t + 4 { print $1 }' "$out")" \
		"$(awk '/^Totals:/ { t = NR } t && NR == t + 4 { for (i = 1; i <= NF; i++) s += $i; print s }' "$out")" \
		"$(grep -c -E "$BAD" "$out" || true)" "$(grep -m1 -o -E "$BAD.*" "$out" | cut -c1-120)"
}
if [ -n "${STRESS:-}" ]; then
	echo "== imaptest stress mode, ${CLIENTS:-10} clients, $STRESS s each"
	printf '%-13s %8s %8s %6s  %s\n' server logins commands errors "first error"
	for srv in "${SERVERS[@]}"; do
		# shellcheck disable=SC2086
		stress ${srv% *}
	done
fi

if [ -n "${VERBOSE:-}" ]; then
	for srv in "${SERVERS[@]}"; do
		name=${srv%% *}
		for g in $(list "$name" fail); do
			echo "--- $name $g"
			grep -v '^Error: .* reply for command: ID ' "$W/out/$name/$g.out" | cut -c1-400
		done
		if [ -n "${STRESS:-}" ] && grep -q -E "$BAD" "$W/out/$name.stress"; then
			echo "--- $name stress"
			grep -o -E "$BAD.*" "$W/out/$name.stress" | sort | uniq -c | sort -rn | head -20 | cut -c1-400
		fi
	done
fi
exit "$DIFF"
