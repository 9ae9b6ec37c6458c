package webhook

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// Concurrent Publishes share fsyncs: fewer fsyncs than events, each Publish still returning
// only once its event is on disk (the restart below finds them all).
func TestJournalGroupCommit(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{Dir: dir, AllowInsecure: true,
		Endpoints: []Endpoint{{BAL: "a@b.fr", URL: "http://127.0.0.1:9/", Secret: []byte("0123456789abcdef")}}}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := d.Publish(context.Background(), Event{ID: fmt.Sprint(w, "-", i), Type: EventAccepted, BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncs := d.j.Syncs()
	t.Logf("%d events, %d fsyncs", workers*each, syncs)
	if syncs >= workers*each {
		t.Errorf("%d fsyncs for %d events: no group commit", syncs, workers*each)
	}
	d.Close()
	d, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n := len(d.eps[0].queue); n != workers*each {
		t.Fatalf("%d events after restart, want %d", n, workers*each)
	}
}
