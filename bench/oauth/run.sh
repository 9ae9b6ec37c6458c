#!/usr/bin/env bash
# XOAUTH2 login benchmark: logins per second on IMAPS (implicit TLS, AUTHENTICATE with SASL-IR,
# then LOGOUT; one TLS handshake per login) of our server (transport/imapd, Pro Santé Connect
# tokens verified offline with transport/psc, keys cached) against a throw-away Dovecot 2.3
# whose oauth2 passdb validates the same JWT locally (introspection_mode = local, the public
# key in local_validation_key_dict), and against our own PLAIN (PBKDF2 password hash), in the
# same run, the servers taking turns. Prints medians and the ratios ours/Dovecot and
# XOAUTH2/PLAIN (> 1: ours faster).
#
# DOVECOT_LOGIN=performance runs Dovecot's login processes in its high-performance mode
# (service_count = 0, process_min_avail = 2) instead of its default one-process-per-connection.
#
# Needs dovecot-core and dovecot-imapd (scripts/install-peers.sh) and root (Dovecot drops to
# the "mail" user). Usage: bench/oauth/run.sh [N] [CONCURRENCY] [RUNS]   (defaults 2000 8 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
C=${2:-8}
RUNS=${3:-3}
DOVECOT=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$DOVECOT" ] || { echo "dovecot not installed: scripts/install-peers.sh" >&2; exit 1; }

W=$(mktemp -d /var/tmp/mssante-oauth-bench.XXXXXX)
chmod 755 "$W"
OURS_PID=""
cleanup() {
	[ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
	[ -f "$W/dovecot/run/master.pid" ] && kill "$(cat "$W/dovecot/run/master.pid")" 2>/dev/null || true
	sleep 0.5
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PD=$(freeport); PO=$(freeport)

go build -o "$W/oauth" ./bench/oauth
"$W/oauth" mint -dir "$W"
chmod 644 "$W/tls.key"   # Dovecot's master reads it as root; the folder is thrown away

mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/dovecot/mail"
chown mail:mail "$W/dovecot/mail"
echo 'testuser@bench.test:{PLAIN}pass::::::' > "$W/dovecot/users"
cat > "$W/dovecot/oauth2.conf.ext" <<CONF
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$W/keys/
username_attribute = email
CONF
cat > "$W/dovecot/dovecot.conf" <<CONF
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = mssante-oauth-bench-$PD
log_path = $W/dovecot/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$W/tls.crt
ssl_key = <$W/tls.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = xoauth2 oauthbearer plain
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $W/dovecot/oauth2.conf.ext
}
passdb {
  driver = passwd-file
  mechanisms = plain
  args = scheme=PLAIN $W/dovecot/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$W/dovecot/mail/%u
}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
service imap-login {
$( [ "${DOVECOT_LOGIN:-}" = performance ] && printf '  service_count = 0\n  process_min_avail = 2\n' )
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PD
  }
}
CONF
"$DOVECOT" -c "$W/dovecot/dovecot.conf"
"$W/oauth" serve -dir "$W" -addr "127.0.0.1:$PO" > "$W/ours.log" 2>&1 &
OURS_PID=$!
for _ in $(seq 50); do
	if (echo > /dev/tcp/127.0.0.1/$PD) 2>/dev/null && (echo > /dev/tcp/127.0.0.1/$PO) 2>/dev/null; then break; fi
	sleep 0.1
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { "$W/oauth" load -addr "127.0.0.1:$1" -mech "$2" -token "$W/token" -ca "$W/tls.crt" -n "$N" -c "$C" || { tail -20 "$W/dovecot/dovecot.log" >&2; exit 1; }; }
: > "$W/ours_x"; : > "$W/dove_x"; : > "$W/ours_p"; : > "$W/dove_p"
for _ in $(seq "$RUNS"); do
	run "$PO" XOAUTH2 >> "$W/ours_x"
	run "$PD" XOAUTH2 >> "$W/dove_x"
	run "$PO" PLAIN >> "$W/ours_p"
	run "$PD" PLAIN >> "$W/dove_p"
done
OX=$(median < "$W/ours_x"); DX=$(median < "$W/dove_x"); OP=$(median < "$W/ours_p"); DP=$(median < "$W/dove_p")
echo "logins/s over IMAPS, $N logins, $C at once, median of $RUNS runs"
echo "  ours XOAUTH2 (PSC token, offline)     $OX   (runs: $(tr '\n' ' ' < "$W/ours_x"))"
echo "  Dovecot 2.3 XOAUTH2 (oauth2, local)   $DX   (runs: $(tr '\n' ' ' < "$W/dove_x"))"
echo "  ours PLAIN                            $OP   (runs: $(tr '\n' ' ' < "$W/ours_p"))"
echo "  Dovecot PLAIN (passwd-file, {PLAIN})  $DP   (runs: $(tr '\n' ' ' < "$W/dove_p"))"
awk -v o="$OX" -v d="$DX" -v p="$OP" 'BEGIN { printf "ratio ours/Dovecot XOAUTH2: %.2f (goal >= 1.0)\nratio ours XOAUTH2/ours PLAIN: %.2f\n", o/d, o/p }'
