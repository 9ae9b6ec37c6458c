package responder

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReply feeds arbitrary received messages to the reply decision: no panic, and a reply,
// when one is due, is auto-submitted and never addressed to the responder.
func FuzzReply(f *testing.F) {
	f.Add([]byte("Return-Path: <a@b.fr>\r\nFrom: a@b.fr\r\nSubject: s\r\nMessage-ID: <1@b>\r\n\r\nx"))
	f.Add([]byte("From: " + self + "\r\n\r\n"))
	f.Add([]byte("Return-Path: <>\r\nAuto-Submitted: auto-replied\r\n\r\n"))
	f.Add([]byte("From: =?utf-8?q?=C3=A9?= <x@y>\r\nSubject: =?utf-8?b?w6k=?=\r\nReferences: <a>\r\n <b>\r\nMessage-ID: <c>\r\n\r\n"))
	r := &Responder{addr: self}
	f.Fuzz(func(t *testing.T, raw []byte) {
		reply, to, err := r.Reply(bytes.NewReader(raw))
		if err != nil {
			if !errors.Is(err, ErrNotDue) {
				t.Fatalf("error not wrapping ErrNotDue: %v", err)
			}
			return
		}
		if !bytes.Contains(reply, []byte("\r\nAuto-Submitted: auto-replied\r\n")) || to == "" || bytes.EqualFold([]byte(to), []byte(self)) {
			t.Fatalf("bad reply to %q:\n%s", to, reply)
		}
		if bytes.Contains(reply[:bytes.Index(reply, []byte("\r\n\r\n"))], []byte("\n\n")) {
			t.Fatalf("header injection:\n%q", reply)
		}
	})
}
