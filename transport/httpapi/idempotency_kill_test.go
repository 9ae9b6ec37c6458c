package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/httpapi"
)

// killChild names, in the environment of a child process, the request it serves before it is
// killed: sandbox folder, BAL state, API state, body file and key, tab-separated.
const killChild = "MSSANTE_HTTPAPI_KILL_CHILD"

// A process killed at any point of a request sent under an Idempotency-Key: the request sent
// again with the same key to a new process on the same state sends the message once. Each
// round kills the child a little later, from before the submission to after the answer.
func TestAPIIdempotentAfterKill(t *testing.T) {
	if v := os.Getenv(killChild); v != "" {
		serveThenWait(t, v)
		return
	}
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	balState, apiState := t.TempDir(), t.TempDir()
	cdaXML, _ := os.ReadFile(sb.Info.SampleCDA)
	pdf, _ := os.ReadFile(sb.Info.SamplePDF)
	body, _ := json.Marshal(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}})
	tmp := t.TempDir()
	jsonFile := filepath.Join(tmp, "body.json")
	os.WriteFile(jsonFile, body, 0o600)

	// JSON requests (the API chooses the Message-ID, made durable first), then raw messages
	// (their own Message-ID).
	delays := []time.Duration{0, 2, 5, 10, 20, 40, 80, 160, 320, 640, 0, 5, 20, 40, 80, 160}
	const jsonRounds = 10
	ids := map[string]int{}     // Message-ID → round
	resent := map[string]bool{} // Message-ID → the retry submitted it again
	for i, delay := range delays {
		delay *= time.Millisecond
		key := fmt.Sprint("kill-", i)
		bodyFile, body := jsonFile, body
		if i >= jsonRounds {
			body = fmt.Appendf(nil, "From: %s\r\nTo: %s\r\nSubject: kill\r\nMessage-ID: <kill-%d-%d@%s>\r\n"+
				"X-MSS-NIL: DEV000000\r\n\r\n%s\r\n", from, to, i, time.Now().UnixNano(), sandbox.Hopital, bytes.Repeat([]byte("x"), 70))
			bodyFile = filepath.Join(tmp, key+".eml")
			os.WriteFile(bodyFile, body, 0o600)
		}
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAPIIdempotentAfterKill$")
		cmd.Env = append(os.Environ(), killChild+"="+sb.Info.Dir+"\t"+balState+"\t"+apiState+"\t"+bodyFile+"\t"+key)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		if !lines.Scan() || lines.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child did not start: %q", i, lines.Text())
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		said := make(chan bool)
		go func() {
			a := false
			for lines.Scan() {
				a = a || lines.Text() == "answered"
			}
			said <- a
		}()
		cmd.Wait()
		done := <-said

		// The restart: new clients on the same state, the request sent again.
		res, replayed := sendOnce(t, ctx, sb.Info.Dir, from, balState, apiState, body, contentType(bodyFile), key)
		if res.MessageID == "" || len(res.Recipients) != 1 {
			t.Fatalf("round %d: answer %+v", i, res)
		}
		if done && !replayed {
			t.Fatalf("round %d: the first request was answered, the retry was not a replay", i)
		}
		if _, dup := ids[res.MessageID]; dup {
			t.Fatalf("round %d: Message-ID %s of another key", i, res.MessageID)
		}
		ids[res.MessageID], resent[res.MessageID] = i, !replayed && res.Recipients[0].Status == "accepted"
		t.Logf("round %d (%s): killed %v after the request began, answered before: %v, retry: %s, replayed %v",
			i, filepath.Ext(bodyFile), delay, done, res.Recipients[0].Status, replayed)
	}

	// Every message in the mailbox is one of the rounds', each round's is there, and a round
	// has a second copy only when the kill fell between the submission server's acceptance
	// and bal's record of it (SMTP does not tell a client that lost the reply whether the
	// message was taken): same Message-ID, and only when the retry submitted it (neither a
	// replay of the answer nor already_sent).
	var msgs [][]byte
	var copies map[string]int
	var settled time.Time
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		msgs, err = sb.Info.Messages(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		copies = map[string]int{}
		for _, m := range msgs {
			msg, err := mail.ReadMessage(bytes.NewReader(m))
			if err != nil {
				t.Fatal(err)
			}
			id := strings.Trim(msg.Header.Get("Message-Id"), "<>")
			if _, ok := ids[id]; !ok {
				t.Fatalf("a message in the mailbox with Message-ID %q, of no round", id)
			}
			copies[id]++
		}
		// Every round's message relayed to the cabinet, and a second more for a copy sent
		// twice to show; or the report below says which is missing.
		if len(copies) == len(ids) && settled.IsZero() {
			settled = time.Now()
		}
		if !settled.IsZero() && time.Since(settled) > time.Second || time.Now().After(deadline) {
			break
		}
	}
	twice := 0
	for id, round := range ids {
		switch n := copies[id]; {
		case n == 1:
		case n == 2 && resent[id]:
			twice++
			t.Logf("round %d: two copies of the same Message-ID: the kill fell between the server's acceptance and bal's record", round)
		default:
			t.Errorf("round %d: %d copies of %s (submitted by the retry: %v)", round, n, id, resent[id])
		}
	}
	t.Logf("%d rounds, %d messages in the mailbox, %d sent twice in the SMTP window", len(delays), len(msgs), twice)
}

// sendOnce starts a BAL client and a Handler on the state given, sends body (of ctype) under
// key and closes the client.
func sendOnce(t *testing.T, ctx context.Context, sbDir, from, balState, apiState string, body []byte, ctype, key string) (res *httpapi.SendResponse, replayed bool) {
	t.Helper()
	o, err := bal.OptionsFromSandbox(sbDir, from)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = balState, "DEV000000"
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := httpapi.New(&httpapi.Options{BALs: map[string]*bal.Client{from: c}, StateDir: apiState,
		Auth: httpapi.AuthenticatorFunc(func(*http.Request) (*httpapi.Caller, error) { return &httpapi.Caller{BALs: []string{from}}, nil })})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/bals/"+from+"/messages", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != http.StatusAccepted {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	return res, rec.Header().Get("Idempotent-Replayed") == "true"
}

// serveThenWait is the child: it says "ready", serves the request, says "answered" and waits
// to be killed.
func serveThenWait(t *testing.T, v string) {
	var sbDir, balState, apiState, bodyFile, key string
	parts := bytes.Split([]byte(v), []byte("\t"))
	if len(parts) != 5 {
		t.Fatal("bad child arguments")
	}
	sbDir, balState, apiState, bodyFile, key = string(parts[0]), string(parts[1]), string(parts[2]), string(parts[3]), string(parts[4])
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		t.Fatal(err)
	}
	from := "dpi@" + sandbox.Hopital
	fmt.Println("ready")
	sendOnce(t, context.Background(), sbDir, from, balState, apiState, body, contentType(bodyFile), key)
	fmt.Println("answered")
	time.Sleep(time.Minute)
}

func contentType(bodyFile string) string {
	if filepath.Ext(bodyFile) == ".eml" {
		return "message/rfc822"
	}
	return "application/json"
}
