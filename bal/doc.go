// Package bal is the applicative BAL client (BAL applicative) a DPI embeds to exchange
// MSSanté mail: it sends through its operator's submission server and reads its mailbox
// over IMAP, both with mutual TLS and the BAL's IGC-Santé certificate, and correlates the
// receipts that come back to what it sent.
//
// Start with [New] and [Options]; [NewDocumentMessage] builds a message carrying a CDA
// document; [Client.Await] waits for its receipts. Against the local trust space of
// "mssante dev", [OptionsFromSandbox] fills the Options from its folder. Specifications are
// cited as in docs/references.md.
//
// It implements, on top of go-smtp and go-imap:
//   - submission per RFC 6409 with STARTTLS (Réf. #2 ECO.1.0.1) or implicit TLS, SASL
//     EXTERNAL (default), PLAIN or XOAUTH2 (Pro Santé Connect, Réf. #2 ECO.1.2.1), or none;
//   - endpoint discovery by DNS SRV records, RFC 6186 (Réf. #2 ECO.1.1.9, which does not name
//     the records: the RFC 6186 names are used);
//   - DSN requests, RFC 3461 (NOTIFY, RET, ENVID, ORCPT), and DSN reading, RFC 3464;
//   - MDN requests and answers, RFC 8098, with the MSSanté integration codes 900–906
//     (CI-SIS Trans-CDA-MSS), and the error mail when no MDN was asked for;
//   - IMAP4rev1 (RFC 3501) with IDLE (RFC 2177) or polling, UIDVALIDITY/UID checkpoints,
//     the $MDNSent keyword (RFC 3503).
//
// # Sending
//
// [Client.Send] checks every recipient against the liste blanche before any network I/O,
// writes the message to an outbox under Options.StateDir with a stable Message-ID, and
// submits it with DSN parameters. Sending the same message again after a network error only
// retries the recipients the server had not accepted: no duplicate.
//
// Consecutive sends reuse one connection (no RSET after a transaction that ended cleanly)
// and write the message dot-stuffed straight onto the TLS connection in large records.
// Concurrent calls (and [Client.SendBatch]) share that connection and the fsyncs of the
// outbox journal (group commit): a call returns only once its own record is durable.
//
// # Receiving
//
// [Client.Watch] hands each new message once to a [Handler], across restarts and duplicate
// deliveries (a journal keyed by Message-ID, a checkpoint, and a keyword or a move on the
// server), with its attachments on disk. The handler accepts, or rejects with [Reject]; the
// client answers with the MDN or error mail due. DSNs and MDNs arriving in the mailbox update
// the outbox and are reported as [Receipt] values: each recipient ends with exactly one final
// status. A sender that only wants the receipts of what it sent calls [Client.Await], which
// watches for receipts alone.
//
// # Several processes on one BAL
//
// A state folder (Options.StateDir) belongs to one [Client] at a time: [New] takes it with an
// flock(2) lock, released by [Client.Close] or when the process ends however it ends, and a
// second Client on it, in this process or another, gets [ErrStateInUse] naming the holder's
// PID. What processes share is the mailbox on the server. A vendor may run side by side, on
// one BAL applicative:
//   - any number of senders (a web tier, batch jobs), each with its own state folder;
//   - one watcher per state folder: the one that integrates received messages, and, for
//     each sender, a watch with that sender's state folder to collect its receipts, then or
//     later (a sender that does not watch finds its receipts in the mailbox when it does).
//
// A watcher takes the receipts (DSN, MDN, error mail) of the messages its own outbox holds,
// and leaves every other one untouched in the mailbox, neither flagged nor moved nor
// journaled, for the watcher of the state folder that sent it; it remembers the UID
// (under the mailbox's UIDVALIDITY) so as not to read it again. A received message is
// handed by the first watcher that meets it, which flags or moves it for the others: let
// only one watcher integrate messages, the others following receipts only
// ([WatchOptions].ReceiptsOnly, or [Client.Await] for one message; "mssante receive
// --receipts-only" from a shell). Such a watcher sends no MDN and needs no Options.NIL; a
// watcher that integrates does, and Watch refuses to start without it.
//
// Nothing the client logs holds health data: message IDs, mailbox addresses and counts only.
package bal
