#!/usr/bin/env python3
"""Capture the MDNs (RFC 8098 read receipts) that a real Thunderbird sends.

Not run by CI: it regenerates mssante/testdata/mdn-thunderbird-*.eml by hand.
Needs, as root: thunderbird (Debian package), dovecot-imapd, python3 (stdlib only).

    python3 mssante/testdata/mdn-gen/thunderbird_mdn.py mssante/testdata

It starts, all on 127.0.0.1 and in a throw-away folder:
  - a Dovecot IMAP server (plain login, no TLS) whose INBOX holds the three messages of
    SAMPLES, which ask for a receipt (Disposition-Notification-To);
  - an SMTP server (below) that accepts everything and keeps each DATA it receives;
  - Thunderbird --headless --marionette with a fresh profile: one IMAP account on that
    Dovecot, that SMTP server as outgoing server, receipts "always send" (pref value 1).
Through Marionette (WebDriver JSON over TCP, chrome context) it opens each message in a
message window, which is Thunderbird's ordinary display path (msgHdrView.js
HandleMDNResponse -> nsIMsgMdnGenerator.process). For the first message Thunderbird sends
the MDN by itself (MDN-sent-automatically); for the second, lacking Return-Path, it shows
its "send a receipt?" bar and the script calls SendMDNResponse(), what the bar's
button calls (MDN-sent-manually); for the third, from the user's own domain, the pref
mail.mdn.report.other is first set to 3 (eDeniedOp), and Thunderbird answers "denied".
The bytes Thunderbird sent in SMTP DATA are written, dot-unstuffed, to OUTDIR.
"""

import email.header
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

RECIPIENT = "dr.martin@clinique.test.mssante.fr"  # the Thunderbird user (fake)
SENDER = "secretariat@hopital.test.mssante.fr"  # asks for the receipts (fake)
COLLEAGUE = "accueil@clinique.test.mssante.fr"  # same domain as the user (fake)
PASSWORD = "not-a-secret"

# Messages the Thunderbird user receives: (file name of the captured MDN, Message-ID, subject,
# sender, whether the message carries a Return-Path equal to Disposition-Notification-To,
# what happens: "auto" sent by Thunderbird, "ask" sent when the user agrees, "deny").
SAMPLES = [
    ("mdn-thunderbird-auto.eml", "cr-2026-0001@hopital.test.mssante.fr", "Compte rendu cr-2026-0001", SENDER, True, "auto"),
    ("mdn-thunderbird-manual.eml", "cr-2026-0002@hopital.test.mssante.fr", "Résultats d'analyse (fictifs)", SENDER, False, "ask"),
    ("mdn-thunderbird-denied.eml", "rdv-2026-0003@clinique.test.mssante.fr", "Rendez-vous (fictif)", COLLEAGUE, True, "deny"),
]


def original(msgid, subject, sender, return_path):
    rp = f"Return-Path: <{sender}>\r\n" if return_path else ""
    return (
        rp + f"From: Expediteur Test <{sender}>\r\n"
        f"To: Dr Jean Martin <{RECIPIENT}>\r\n"
        f"Subject: {subject if subject.isascii() else email.header.Header(subject, 'utf-8').encode()}\r\n"
        "Date: Mon, 02 Nov 2026 09:30:00 +0100\r\n"
        f"Message-ID: <{msgid}>\r\n"
        f"Disposition-Notification-To: <{sender}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Bonjour, veuillez trouver le compte rendu (exemple fictif).\r\n"
    ).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- SMTP capture -------------------------------------------------------------------------

captured = []  # DATA bytes, in arrival order
captured_cv = threading.Condition()


class SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        self.reply("220 capture.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line.strip().split(b" ")[0].upper()
            if verb == b"EHLO":
                self.reply("250-capture.test")
                self.reply("250-8BITMIME")
                self.reply("250 SIZE 10485760")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.reply("250 OK")
            elif verb == b"DATA":
                self.reply("354 go on")
                data = bytearray()
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    if l.startswith(b"."):
                        l = l[1:]  # dot-unstuffing (RFC 5321 4.5.2)
                    data += l
                with captured_cv:
                    captured.append(bytes(data))
                    captured_cv.notify_all()
                self.reply("250 kept")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not here")


# --- Dovecot --------------------------------------------------------------------------------


def start_dovecot(work, port):
    home = os.path.join(work, "home")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(home, "Maildir", sub), exist_ok=True)
    for i, (_, msgid, subject, sender, rp, _) in enumerate(SAMPLES):
        with open(os.path.join(home, "Maildir", "new", f"{1800000000 + i}.M{i}P1.capture"), "wb") as f:
            f.write(original(msgid, subject, sender, rp))
    subprocess.run(["chown", "-R", "mail:mail", home], check=True)
    os.makedirs(os.path.join(work, "run"))
    with open(os.path.join(work, "users"), "w") as f:
        f.write(f"{RECIPIENT}:{{PLAIN}}{PASSWORD}::::::\n")
    conf = os.path.join(work, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""base_dir = {work}/run
state_dir = {work}/run
instance_name = dovecot-mdn-gen-{port}
log_path = {work}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {work}/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={home}
}}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    subprocess.run(["dovecot", "-c", conf], check=True)
    wait_listen(port)
    return conf


def wait_listen(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


# --- Thunderbird profile and Marionette ------------------------------------------------------


def write_profile(profile, imap_port, smtp_port, marionette_port):
    prefs = {
        "marionette.port": marionette_port,
        "mail.shell.checkDefaultClient": False,
        "mail.provider.suppress_dialog_on_startup": True,
        "mailnews.start_page.enabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.disabledForTesting": True,
        "mail.accountmanager.accounts": "account1",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.account.account1.server": "server1",
        "mail.account.account1.identities": "id1",
        "mail.server.server1.type": "imap",
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": imap_port,
        "mail.server.server1.userName": RECIPIENT,
        "mail.server.server1.name": RECIPIENT,
        "mail.server.server1.socketType": 0,  # plain IMAP on loopback
        "mail.server.server1.authMethod": 3,  # cleartext password
        "mail.server.server1.login_at_startup": False,
        "mail.server.server1.check_new_mail": False,
        "mail.identity.id1.fullName": "Dr Jean Martin",
        "mail.identity.id1.useremail": RECIPIENT,
        "mail.identity.id1.smtpServer": "smtp1",
        "mail.identity.id1.valid": True,
        "mail.smtpservers": "smtp1",
        "mail.smtp.defaultserver": "smtp1",
        "mail.smtpserver.smtp1.hostname": "127.0.0.1",
        "mail.smtpserver.smtp1.port": smtp_port,
        "mail.smtpserver.smtp1.authMethod": 1,  # no authentication
        "mail.smtpserver.smtp1.try_ssl": 0,
        # Return receipts: enabled, "always send" (nsMsgMdnGenerator eAutoSendOp = 1).
        "mail.mdn.report.enabled": True,
        "mail.mdn.report.not_in_to_cc": 1,
        "mail.mdn.report.outside_domain": 1,
        "mail.mdn.report.other": 1,
    }
    with open(os.path.join(profile, "user.js"), "w") as f:
        for k, v in prefs.items():
            f.write(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n")


class Marionette:
    def __init__(self, port, timeout=120):
        end = time.time() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), 5)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.5)
        self.sock.settimeout(300)
        self.buf = b""
        self.id = 0
        self.read()  # greeting
        self.call("WebDriver:NewSession", {"capabilities": {}})
        self.call("Marionette:SetContext", {"value": "chrome"})

    def read(self):
        while b":" not in self.buf:
            self.buf += self.sock.recv(65536)
        n, rest = self.buf.split(b":", 1)
        n = int(n)
        while len(rest) < n:
            rest += self.sock.recv(65536)
        self.buf = rest[n:]
        return json.loads(rest[:n])

    def call(self, name, params):
        self.id += 1
        msg = json.dumps([0, self.id, name, params]).encode()
        self.sock.sendall(str(len(msg)).encode() + b":" + msg)
        _, _, err, result = self.read()
        if err:
            raise RuntimeError(f"{name}: {err}")
        return result

    def run(self, script, *args):
        """Runs script (an async function body) in the chrome context and returns its value."""
        wrapped = (
            "const [resolve] = [arguments[arguments.length - 1]];\n"
            f"(async (...args) => {{ {script} }})(...Array.from(arguments).slice(0, -1))"
            ".then(resolve, e => resolve({error: String(e) + '\\n' + e.stack}));"
        )
        r = self.call("WebDriver:ExecuteAsyncScript", {"script": wrapped, "args": list(args), "scriptTimeout": 120000})
        v = r.get("value") if isinstance(r, dict) else r
        if isinstance(v, dict) and "error" in v:
            raise RuntimeError(v["error"])
        return v


# Wait for the 3-pane window, log in to IMAP and fetch the INBOX headers.
SYNC_INBOX = """
const {MailServices} = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const sleep = ms => new Promise(r => setTimeout(r, ms));
let win;
for (let i = 0; i < 600 && !(win = Services.wm.getMostRecentWindow("mail:3pane")); i++) await sleep(100);
if (!win) throw new Error("no mail:3pane window");
const server = MailServices.accounts.getIncomingServer("server1");
server.password = args[0];
let inbox;
for (let i = 0; i < 300; i++) {
  inbox = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
  if (inbox) break;
  server.performExpand(win.msgWindow);
  await sleep(200);
}
if (!inbox) throw new Error("no INBOX");
for (let i = 0; i < 300; i++) {
  inbox.updateFolder(win.msgWindow);
  await sleep(300);
  const ids = [...inbox.messages].map(h => h.messageId);
  if (ids.length >= args[1]) return ids;
}
throw new Error("INBOX headers never arrived");
"""

# Open the message args[0] (a Message-ID) in a message window: Thunderbird's display path
# decides about the receipt. args[1]: press "Send receipt" on the bar Thunderbird shows.
OPEN_MESSAGE = """
const {MailServices} = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const {MailUtils} = ChromeUtils.importESModule("resource:///modules/MailUtils.sys.mjs");
const sleep = ms => new Promise(r => setTimeout(r, ms));
const server = MailServices.accounts.getIncomingServer("server1");
const inbox = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
const hdr = [...inbox.messages].find(h => h.messageId == args[0]);
if (!hdr) throw new Error("message not in INBOX: " + args[0]);
const win = await new Promise(resolve => {
  const w = MailUtils.openMessageInNewWindow(hdr);
  w.addEventListener("load", () => resolve(w), {once: true});
});
let about;
for (let i = 0; i < 300; i++) {
  about = win.messageBrowser?.contentWindow;
  if (about?.gMessage?.messageId == args[0] && about.document.readyState == "complete") break;
  await sleep(100);
}
if (!args[1]) return "opened";
let bar;
for (let i = 0; i < 300; i++) {
  bar = about.gMessageNotificationBar?.mdnGenerator;
  if (bar) break;
  await sleep(100);
}
if (!bar) throw new Error("Thunderbird did not offer to send a receipt");
about.SendMDNResponse();  // what the bar's "Send Receipt" button calls
return "receipt sent by the user";
"""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: thunderbird_mdn.py OUTDIR")
    outdir = sys.argv[1]
    work = tempfile.mkdtemp(prefix="tb-mdn-")
    os.chmod(work, 0o755)
    imap_port, smtp_port, mn_port = free_port(), free_port(), free_port()
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", smtp_port), SMTPHandler)
    smtp.daemon_threads = True
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    conf = start_dovecot(work, imap_port)
    profile = os.path.join(work, "profile")
    os.makedirs(profile)
    write_profile(profile, imap_port, smtp_port, mn_port)
    env = dict(os.environ, HOME=work, TMPDIR=work, MOZ_HEADLESS="1")
    tb = subprocess.Popen(
        ["thunderbird", "--headless", "--marionette", "--remote-allow-system-access", "--no-remote", "--profile", profile],
        env=env, stdout=open(os.path.join(work, "thunderbird.log"), "wb"), stderr=subprocess.STDOUT)
    try:
        version = subprocess.run(["thunderbird", "--version"], capture_output=True, text=True, env=env).stdout.strip()
        m = Marionette(mn_port)
        print("INBOX:", m.run(SYNC_INBOX, PASSWORD, len(SAMPLES)))
        for name, msgid, _, _, _, action in SAMPLES:
            n = len(captured)
            if action == "deny":
                m.run('Services.prefs.setIntPref("mail.mdn.report.other", 3); return "deny";')
            print(name, m.run(OPEN_MESSAGE, msgid, action == "ask"))
            with captured_cv:
                if not captured_cv.wait_for(lambda: len(captured) > n, timeout=120):
                    raise RuntimeError(f"no MDN sent for {msgid}")
                data = captured[n]
            with open(os.path.join(outdir, name), "wb") as f:
                f.write(data)
            print(f"{name}: {len(data)} bytes from {version}")
    finally:
        tb.terminate()
        try:
            tb.wait(30)
        except subprocess.TimeoutExpired:
            tb.kill()
        subprocess.run(["doveadm", "-c", conf, "stop"])
        smtp.shutdown()
        if os.environ.get("KEEP_WORK"):
            print("work folder kept:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
