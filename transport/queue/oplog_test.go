package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// Each stored outcome reaches the operational log with the queue id, the recipient's domain,
// the reply codes and the remote MTA; a remote reply that quotes the address (a patient's
// INS as local part) is cut to its codes. A notice handed to the Notifier is logged too.
func TestOutcomesLogged(t *testing.T) {
	var logs bytes.Buffer
	c := newClock()
	q, err := Open(&Options{Dir: t.TempDir(), Now: c.Now, Rand: func() float64 { return 0.5 },
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const ins = "279035121518989"
	id, err := q.Enqueue(context.Background(), env("dr@x.fr", ins+"@patient.mssante.fr", "ok@y.fr", "later@z.fr"),
		strings.NewReader("Subject: secret\r\n\r\nbody"))
	if err != nil {
		t.Fatal(err)
	}
	d := DelivererFunc(func(_ context.Context, j *Job) []Result {
		var rs []Result
		for _, r := range j.Rcpts {
			switch {
			case strings.HasPrefix(r.Addr, ins):
				rs = append(rs, Result{Err: errors.New("refused"), Permanent: true, RemoteMTA: "mx.patient.mssante.fr",
					Status: "550 5.1.1 <" + r.Addr + ">: Recipient address rejected"})
			case r.Addr == "ok@y.fr":
				rs = append(rs, Result{Status: "250 2.0.0 ok", RemoteMTA: "mx.y.fr"})
			default:
				rs = append(rs, Result{Err: errors.New("timeout"), Status: "451 4.4.1 no answer"})
			}
		}
		return rs
	})
	q.RunOnce(context.Background(), d, &RunOptions{Notifier: &recorder{}})

	// Records by message and recipient domain (or notice kind).
	recs := map[string]map[string]any{}
	for _, r := range testenv.JSONRecords(t, logs.String(), "") {
		key := fmt.Sprint(r["msg"])
		for _, k := range []string{"rcpt_domain", "kind"} {
			if v, ok := r[k]; ok {
				key += " " + fmt.Sprint(v)
			}
		}
		recs[key] = r
	}
	next := c.Now().Add(time.Minute).Format(time.RFC3339)
	for key, want := range map[string]map[string]any{
		"queue: recipient failed patient.mssante.fr": {"level": "WARN", "id": id, "code": "550 5.1.1",
			"remote_mta": "mx.patient.mssante.fr", "reason": "refused", "dsn": true, "attempts": float64(1)},
		"queue: recipient delivered y.fr":    {"level": "INFO", "id": id, "code": "250 2.0.0", "remote_mta": "mx.y.fr"},
		"queue: recipient deferred z.fr":     {"level": "INFO", "id": id, "code": "451 4.4.1", "next_attempt": next},
		"queue: delivery notice sent failed": {"level": "INFO", "id": id, "rcpts": float64(1)},
	} {
		r, ok := recs[key]
		if !ok {
			t.Errorf("no record %q in:\n%s", key, logs.String())
			continue
		}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("%q: %s = %v, want %v", key, k, r[k], v)
			}
		}
	}
	if strings.Contains(logs.String(), ins) || strings.Contains(logs.String(), "secret") {
		t.Errorf("the log holds the patient's address or the content:\n%s", logs.String())
	}
}
