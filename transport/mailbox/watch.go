package mailbox

import (
	"sync"
)

// Watcher signals changes to folders. Watch returns a channel that receives a value after a
// change (append, flags, expunge, folder deletion) to the folder, coalesced: one value may
// stand for several changes, and a receiver then asks the Store what changed since the
// modification sequence it last saw ([Store.Changes]). cancel releases the channel.
//
// The SQLite store signals at once the changes made through it, and finds those made by
// other processes on the same files with one query per [Options.WatchPoll] for all watched
// folders. The PostgreSQL store, shared by several nodes, signals the changes of every node
// (LISTEN/NOTIFY), so that IMAP sessions never poll on their own.
type Watcher interface {
	Watch(mbox MailboxID) (changes <-chan struct{}, cancel func())
}

// hub fans the change signal of a folder out to its watchers in this process. It remembers
// the highest modification sequence signalled per watched folder, so that a cross-process
// check does not wake anyone for a change already signalled.
type hub struct {
	mu    sync.Mutex
	boxes map[MailboxID]*watched
}

type watched struct {
	chans  map[chan struct{}]struct{}
	modSeq uint64
}

func (h *hub) watch(id MailboxID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.boxes == nil {
		h.boxes = make(map[MailboxID]*watched)
	}
	w := h.boxes[id]
	if w == nil {
		w = &watched{chans: make(map[chan struct{}]struct{})}
		h.boxes[id] = w
	}
	w.chans[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(w.chans, ch)
			if len(w.chans) == 0 && h.boxes[id] == w {
				delete(h.boxes, id)
			}
			h.mu.Unlock()
		})
	}
}

// changed wakes the watchers of id, unless modSeq is not above the last one signalled (0:
// always wake, for a change without a modification sequence such as a deletion).
func (h *hub) changed(id MailboxID, modSeq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.boxes[id]
	if w == nil {
		return
	}
	if modSeq != 0 {
		if modSeq <= w.modSeq {
			return
		}
		w.modSeq = modSeq
	}
	for ch := range w.chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// known returns the watched folders with the last modification sequence signalled for each
// (0 when none yet).
func (h *hub) known() map[MailboxID]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[MailboxID]uint64, len(h.boxes))
	for id, w := range h.boxes {
		out[id] = w.modSeq
	}
	return out
}
