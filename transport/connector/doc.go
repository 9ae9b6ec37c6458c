// Package connector is the mail path of the MSSanté reference connector: what a structure
// installs in its DMZ to become an MSSanté operator.
//
//   - [Server] in [ModeRelay] receives mail from other operators (port 25): STARTTLS required,
//     an IGC-Santé client certificate required and verified, the MAIL FROM domain listed in the
//     liste blanche and the client certificate DN listed for it, recipients only in our domains.
//   - [Server] in [ModeSubmission] receives mail from our own BALs (587 STARTTLS, 465 implicit
//     TLS): the BAL authenticates with its client certificate (SASL EXTERNAL, RFC 4422 App. A)
//     or, when enabled, AUTH PLAIN over TLS; the envelope sender and the From header must be
//     that BAL; every recipient must be local or in a listed domain.
//   - Both listeners read each MAIL FROM and RCPT TO address once with the MSSanté address
//     rules ([mssante.NewAddress]: a dot-atom local part, a domain without trailing dot, lower
//     case) and use that one form for the whitelist, routing, the queue and local delivery; an
//     address they refuse gets 553 5.1.7 or 5.1.3 at once, never a bounce later.
//   - Both listeners read a message's header with the parser the IMAP server reads it with
//     (go-message's textproto) and refuse, 554 5.6.0, a field name that is not RFC 5322 ftext;
//     submission also refuses white space before a field's colon and a second instance of a
//     field RFC 5322 §3.6 allows once, which readers interpret differently.
//   - Both listeners advertise and honour DSN (RFC 3461), SIZE (RFC 1870), PIPELINING (RFC 2920)
//     and 8BITMIME (RFC 6152), and go-smtp's CHUNKING (RFC 3030); a bare CR or bare LF anywhere
//     in a session, commands, DATA or BDAT, is refused (554 5.5.2, or go-smtp's own reply to a
//     command it parses first) and the connection closed (SMTP smuggling, SEC Consult 2023,
//     "\r\n.\r" included); recipients, line length, message size, time and connections per peer are
//     bounded. A message is scanned ([antivirus.Scanner], e.g. clamd) after
//     TLS termination and queued durably ([queue]) before the 250 reply.
//   - [Delivery] takes messages off the queue: local recipients go to a [LocalDelivery], remote
//     ones to the MX (or static route) of their domain over mutual TLS, only if the domain is
//     listed and the server certificate's DN is listed for it; never in plaintext.
//   - Every event (received, queued, delivered, deferred, bounced, rejected) goes to the audit
//     log ([audit.Log]) with IDs, envelope, peer DN, TLS version, outcome and reason; never
//     subject, body or patient data.
//
// Reply codes follow RFC 5321 and the enhanced status codes of RFC 3463, RFC 3207 (530 5.7.0
// before STARTTLS) and RFC 4954; the texts are generic, the detail goes to the audit log.
//
// The public ANS texts (Réf. #1 v1.4 history, Réf. #2 v1.0.1) do not state the rule between
// operators. The connector applies the one the Liste blanche implies, since it binds each
// domain to the certificate DNs of its operators: the relay accepts mail from domain D only
// from a client whose certificate DN is listed for D, and delivery hands mail for D only to a
// server whose certificate DN is listed for D. Anything else is refused. The rule is the
// [Policy] given to [NewServer] and [NewDelivery]; [ListedOperator] adds the check that lets
// a listed operator send DSNs with a null sender.
//
// Start with [NewServer] and [NewDelivery]; transport/node wires them to the queue, the audit
// log, the metrics and the mailbox store from one configuration file.
package connector
