package mailbox

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
)

// TestFlagSync runs, under strace, a process that makes 21 flag changes and then one delivery,
// and exits without closing the store (as after a crash). With FlagSyncFull each flag change
// fsyncs the index's log once, its commit, and nothing more (the new log's header aside: one
// fsync when the first change starts the log); with FlagSyncNormal none does (apart from the
// new log's header), and the delivery still fsyncs it (which makes the flag changes before it
// durable too). In neither mode does a flag change checkpoint (no fsync of the index itself).
// The store reopened afterwards has both.
func TestFlagSync(t *testing.T) {
	if dir := os.Getenv("MAILBOX_FLAGSYNC_DIR"); dir != "" {
		flagSyncChild(dir, os.Getenv("MAILBOX_FLAGSYNC_MODE"))
		return
	}
	strace := testenv.Require(t, "strace")
	ctx := context.Background()
	for _, mode := range []string{"full", "normal"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, nil)
			s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
			if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
			trace := filepath.Join(t.TempDir(), "trace")
			cmd := exec.Command(strace, "-f", "-y", "-o", trace, "-e", "trace=fsync,fdatasync,newfstatat,statx",
				os.Args[0], "-test.run=^TestFlagSync$")
			cmd.Env = append(os.Environ(), "MAILBOX_FLAGSYNC_DIR="+dir, "MAILBOX_FLAGSYNC_MODE="+mode)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			flags, deliver, index := walSyncs(t, trace)
			t.Logf("fsyncs of the log: %d during 21 flag changes, %d during the delivery; of the index during the flag changes: %d", flags, deliver, index)
			if mode == "full" && (flags < 21 || flags > 22) {
				t.Errorf("flag_sync full: %d fsyncs of the log for 21 flag changes, want one each and the new log's header", flags)
			}
			if index != 0 {
				t.Errorf("flag_sync %s: %d fsyncs of the index during the flag changes (a checkpoint)", mode, index)
			}
			// SQLite syncs the log's header once when it starts a new log (the store was
			// closed, so the log was checkpointed and removed): at most one, whatever the mode
			if mode == "normal" && flags > 1 {
				t.Errorf("flag_sync normal: %d fsyncs of the log for 21 flag changes, want at most 1", flags)
			}
			if deliver < 1 {
				t.Errorf("the delivery did not fsync the log")
			}
			s = openTest(t, dir, nil)
			mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
			ms, err := s.Messages(ctx, mb.ID, 0)
			if err != nil || len(ms) != 2 || !slices.Contains(ms[0].Flags, `\Flagged`) {
				t.Fatalf("after the child: %+v, %v", ms, err)
			}
		})
	}
}

// walSyncs counts the fsyncs of index.db-wal in an strace output between the child's marks,
// and those of index.db during the flag changes.
func walSyncs(t *testing.T, trace string) (flags, deliver, index int) {
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var phase *int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		sync := strings.Contains(l, "fsync(") || strings.Contains(l, "fdatasync(")
		switch {
		case strings.Contains(l, "mark-flags"):
			phase = &flags
		case strings.Contains(l, "mark-deliver"):
			phase = &deliver
		case strings.Contains(l, "mark-end"):
			phase = nil
		case phase != nil && sync && strings.Contains(l, "index.db-wal>"):
			*phase++
		case phase == &flags && sync && strings.Contains(l, "index.db>"):
			index++
		}
	}
	return flags, deliver, index
}

func flagSyncChild(dir, mode string) {
	ctx := context.Background()
	opts := &Options{WatchPoll: -1}
	if mode == "normal" {
		opts.FlagSync = FlagSyncNormal
	}
	s, err := OpenSQLite(ctx, dir, opts)
	if err != nil {
		os.Exit(3)
	}
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		os.Exit(4)
	}
	os.Stat(filepath.Join(dir, "mark-flags"))
	for i := range 21 {
		op := FlagsAdd
		if i%2 == 1 {
			op = FlagsRemove
		}
		if _, err := s.StoreFlags(ctx, mb.ID, []uint32{1}, op, []string{`\Flagged`}); err != nil {
			os.Exit(5)
		}
	}
	os.Stat(filepath.Join(dir, "mark-deliver"))
	if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader("Subject: y\r\n\r\nbody\r\n"), nil); err != nil {
		os.Exit(6)
	}
	os.Stat(filepath.Join(dir, "mark-end"))
	os.Exit(0) // no Close: the log is not checkpointed, as after a crash
}

// TestFlagSyncPragma reads back the synchronous setting of the connections each kind of write
// goes through, and checks that an unknown FlagSync is refused.
func TestFlagSyncPragma(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		opts        *Options
		flags, rest int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{
		{nil, 2, 2},
		{&Options{FlagSync: FlagSyncNormal}, 1, 2},
	} {
		s := openTest(t, t.TempDir(), c.opts)
		var flags, rest int
		flagDB := s.w.db
		if s.flagW != nil {
			flagDB = s.flagW.db
		}
		if err := flagDB.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&flags); err != nil {
			t.Fatal(err)
		}
		if err := s.w.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&rest); err != nil {
			t.Fatal(err)
		}
		if flags != c.flags || rest != c.rest {
			t.Errorf("%+v: synchronous %d for flag changes, %d for the rest; want %d, %d", c.opts, flags, rest, c.flags, c.rest)
		}
	}
	if _, err := OpenSQLite(ctx, t.TempDir(), &Options{FlagSync: 7}); err == nil {
		t.Error("FlagSync 7 accepted")
	}
}
