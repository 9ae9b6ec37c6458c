package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// With Options.ReceiptsOnly the API still follows the receipts of what it sent, but leaves the
// messages its BAL receives in the mailbox: its received list stays empty and the BAL's own
// watcher (another state folder) integrates the message.
func TestAPIReceiptsOnly(t *testing.T) {
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	hop, cab := startAPI(t, info, from, nil), startAPI(t, info, to, &apiOptions{receiptsOnly: true})

	var own httpapi.SendResponse
	if resp := cab.call(t, cab.client, "POST", "/v1/bals/"+to+"/messages", "application/json",
		letter(t, info, "marie.durand@"+sandbox.Cabinet, false), nil, &own); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send from the receipts-only API: %d", resp.StatusCode)
	}
	cab.hooks.wait(t, webhook.EventDelivered, own.MessageID)

	var sent httpapi.SendResponse
	if resp := hop.call(t, hop.client, "POST", "/v1/bals/"+from+"/messages", "application/json", letter(t, info, to, false),
		nil, &sent); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	hop.hooks.wait(t, webhook.EventDelivered, sent.MessageID)
	time.Sleep(2 * time.Second) // several polls of the receipts-only watch
	var list httpapi.ReceivedList
	cab.call(t, cab.client, "GET", "/v1/bals/"+to+"/received", "", nil, nil, &list)
	if len(list.Messages) != 0 {
		t.Fatalf("the receipts-only API took %d messages", len(list.Messages))
	}

	o, err := bal.OptionsFromSandbox(info.Dir, to)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL, o.PollInterval = t.TempDir(), "DEV000000", 500*time.Millisecond
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := false
	c.Watch(ctx, func(_ context.Context, m *bal.Incoming) error {
		if m.MessageID == sent.MessageID {
			got = true
			cancel()
		}
		return nil
	}, nil)
	if !got {
		t.Fatal("the BAL's watcher did not get the message the API left")
	}
}
