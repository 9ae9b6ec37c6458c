#!/bin/bash
# Generates real delivery status notifications with a throw-away Postfix instance (as root,
# loopback only) and copies them to OUT (default: this folder). Used once to produce the
# committed samples, and by TestPostfixDSNLive to check fresh ones. See ../README.md.
#   usage: gen.sh WORKDIR [OUT]
set -euo pipefail
W=$1
OUT=${2:-$(cd "$(dirname "$0")" && pwd)}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null \
  || echo $((20000 + RANDOM % 20000)); }
SMTPD=$(free_port); SINK=$(free_port); REJECT=$(free_port); DEAD=$(free_port)
mkdir -p "$W"/{etc,spool,data,vmail}
chown postfix:postfix "$W/data"; chmod 700 "$W/data"; chown mail:mail "$W/vmail"
cat >"$W/etc/main.cf" <<CF
compatibility_level = 3.6
config_directory = $W/etc
queue_directory = $W/spool
data_directory = $W/data
maillog_file = $W/maillog
maillog_file_prefixes = $W
syslog_name = postfix-mssante-dsn
myhostname = mx.test.example
mydomain = test.example
myorigin = \$mydomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = test.example
virtual_mailbox_base = $W/vmail
virtual_mailbox_maps = inline:{ {bal@test.example=bal/}, {medecin@test.example=medecin/} }
virtual_uid_maps = static:8
virtual_gid_maps = static:8
virtual_minimum_uid = 8
transport_maps = inline:{ {relay.example=smtp:[127.0.0.1]:$SINK}, {reject.example=smtp:[127.0.0.1]:$REJECT}, {slow.example=smtp:[127.0.0.1]:$DEAD} }
smtp_tls_security_level = none
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
CF
# master.cf: the packaged one up to the pipe services, without the port-25 listener, no chroot
sed -n '/^maildrop /q;p' /usr/share/postfix/master.cf.dist | sed '/^smtp *inet/d' |
  awk '$1 !~ /^#/ && /^[a-z]/ && NF >= 8 {$5 = "n"} {print}' >"$W/etc/master.cf"
echo "127.0.0.1:$SMTPD inet n - n - - smtpd" >>"$W/etc/master.cf"
cleanup() {
  postfix -c "$W/etc" stop >/dev/null 2>&1 || true
  [ -f "$W/sink.pid" ] && kill "$(cat "$W/sink.pid")" 2>/dev/null || true
  [ -f "$W/reject.pid" ] && kill "$(cat "$W/reject.pid")" 2>/dev/null || true
}
trap cleanup EXIT
smtp-sink -N -u nobody "127.0.0.1:$SINK" 16 & echo $! >"$W/sink.pid"
smtp-sink -u nobody -f RCPT -B "550 5.1.1 <x> Recipient address rejected: unknown user" "127.0.0.1:$REJECT" 16 & echo $! >"$W/reject.pid"
postfix -c "$W/etc" check
postfix -c "$W/etc" start >/dev/null
send() { # id to notify
  printf 'From: BAL <bal@test.example>\nTo: <%s>\nSubject: DSN sample %s\nMessage-ID: <%s@test.example>\nDate: Sat, 28 Nov 2026 12:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nCorps du message de test.\n' \
    "$2" "$1" "$1" | sendmail -C "$W/etc" -f bal@test.example -N "$3" -V "ENV-$1" -R hdrs "$2"
}
send failed-unknown-user nobody@test.example failure,delay
send failed-remote-550 dr.x@reject.example failure,delay
send delayed dr.y@slow.example delay,failure
send delivered medecin@test.example success,failure
send relayed dr.z@relay.example success,failure
want=5; box="$W/vmail/bal/new"
for _ in $(seq 1 60); do
  n=$( (find "$box" -type f 2>/dev/null || true) | wc -l)
  [ "$n" -ge "$want" ] && break
  sleep 1
done
n=0
for f in "$box"/*; do
  [ -f "$f" ] || continue
  id=$(grep -m1 -o 'ENV-[a-z0-9-]*' "$f" | sed 's/^ENV-//') || true
  [ -n "$id" ] || continue
  cp "$f" "$OUT/dsn-$id.eml"; n=$((n + 1))
done
echo "gen.sh: $n DSNs written to $OUT"
[ "$n" -ge "$want" ]
