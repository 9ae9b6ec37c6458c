package annuaire

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// withLines inserts extra lines into text so that each lands on the line number its key gives.
func withLines(text string, at map[int]string) string {
	lines := strings.SplitAfter(text, "\n")
	var b strings.Builder
	n := 1
	for _, l := range lines {
		for {
			extra, ok := at[n]
			if !ok {
				break
			}
			b.WriteString(extra + "\n")
			n++
		}
		b.WriteString(l)
		n++
	}
	return b.String()
}

func TestAnnuaireLoadSkipsBadLines(t *testing.T) {
	text := genText(t, 20000)
	short := "PER|court@medecin.mssante.fr|8|10001234567"
	long := "PER|long@medecin.mssante.fr" + strings.Repeat("|x", 29) + strings.Repeat("y", 70<<10)
	tooMany := strings.Repeat("z|", 40)
	notUTF8 := "PER|\xff" + strings.Repeat("|", 30)
	// Spread over both halves of the file, which two workers index.
	bad := map[int]string{3: short, 5000: long, 15000: tooMany, 19999: notUTF8}
	x, err := Load(strings.NewReader(withLines(text, bad)), &LoadOptions{MaxBadShare: 0.001})
	if err != nil {
		t.Fatalf("a file with 4 bad lines in 20,004 refused: %v", err)
	}
	rep := x.Report()
	if rep.Skipped != 4 || rep.Lines != 20004 || x.Len() != 20000 || !rep.Complete() {
		t.Fatalf("report %+v, %d entries", rep, x.Len())
	}
	want := []struct {
		line   int
		reason string
	}{{3, "4 fields, want 31"}, {5000, "longer than 65536 bytes"}, {15000, "more than 31 fields"}, {19999, "not UTF-8"}}
	for i, w := range want {
		if b := rep.BadLines[i]; b.Line != w.line || !strings.Contains(b.Reason, w.reason) {
			t.Errorf("bad line %d: %+v, want line %d, %q", i, b, w.line, w.reason)
		}
		if strings.Contains(rep.BadLines[i].Reason, "medecin.mssante.fr") {
			t.Errorf("the reason carries the line's content: %q", rep.BadLines[i].Reason)
		}
	}
	// The good lines around them are all there.
	good := loadText(t, text)
	if x.Len() != good.Len() || len(x.Lookup(nil, "court@medecin.mssante.fr")) != 0 {
		t.Fatal("bad lines indexed")
	}
	r, _ := good.Search(context.Background(), Query{Limit: 3})
	for _, e := range r.Entries {
		if len(x.Lookup(nil, e.Address)) == 0 {
			t.Errorf("good line %s lost", e.Address)
		}
	}
}

func TestAnnuaireLoadRefusesPastTheShare(t *testing.T) {
	header, body, _ := strings.Cut(sample, "\n")
	oneBad := header + "\n" + body + "PER|a@b.fr|8\n" // 1 bad line in 5
	_, err := Load(strings.NewReader(oneBad), nil)
	if !errors.Is(err, ErrTooManyBadLines) || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "1 of 5 lines (the first, line 6: 3 fields") {
		t.Fatalf("default share: %v", err)
	}
	if _, err := Load(strings.NewReader(oneBad), &LoadOptions{MaxBadShare: 0.2}); err != nil {
		t.Fatalf("share 0.2: %v", err)
	}
	if _, err := Load(strings.NewReader(oneBad), &LoadOptions{MaxBadShare: 0.19}); !errors.Is(err, ErrTooManyBadLines) {
		t.Fatalf("share 0.19: %v", err)
	}
	// Negative: not one bad line, however large the file.
	big := withLines(genText(t, 20000), map[int]string{100: "PER|a@b.fr|8"})
	if _, err := Load(strings.NewReader(big), &LoadOptions{MaxBadShare: -1}); !errors.Is(err, ErrTooManyBadLines) {
		t.Fatalf("share -1: %v", err)
	}
	// A wrong header refuses the file whatever the share.
	renamed := strings.Replace(sample, "Code postal", "Code INSEE", 1)
	if _, err := Load(strings.NewReader(renamed), &LoadOptions{MaxBadShare: 1}); !errors.Is(err, ErrFormat) || errors.Is(err, ErrTooManyBadLines) {
		t.Fatalf("wrong header: %v", err)
	}
}

func TestAnnuaireLoadDetectsACutFile(t *testing.T) {
	text := genText(t, 2000)
	// Cut in the middle of a line: the last line is malformed and has no line end.
	cut := text[:strings.LastIndexByte(text[:len(text)*2/3], '\n')+20]
	_, err := Load(strings.NewReader(cut), &LoadOptions{MaxBadShare: 1})
	if !errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), "has no line end") {
		t.Fatalf("cut mid-line: %v", err)
	}
	// Cut right after a whole line, its line end lost: loaded, flagged as not complete.
	whole := text[:strings.LastIndexByte(text[:len(text)/2], '\n')]
	x, err := Load(strings.NewReader(whole), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep := x.Report(); rep.Complete() || !rep.Unterminated || rep.Skipped != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep := loadText(t, text).Report(); !rep.Complete() {
		t.Fatalf("whole file: %+v", rep)
	}
}

func TestAnnuaireRefresherSkipsABadLine(t *testing.T) {
	p := newPublisher(t)
	dir := t.TempDir()
	ctx := context.Background()
	r, err := NewRefresher(dir, &FetchOptions{URL: p.URL + "/x", HTTPClient: p.Client()})
	if err != nil {
		t.Fatal(err)
	}
	text := genText(t, 5000)
	p.publish(t, "Extraction_Correspondance_MSSante_202611270130.zip", text)
	if _, err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The next day's file has one line a column short: it is swapped in all the same.
	p.publish(t, "Extraction_Correspondance_MSSante_202611280130.zip", withLines(text, map[int]string{42: "PER|a@b.fr|8"}))
	if changed, err := r.Refresh(ctx); err != nil || !changed {
		t.Fatalf("file with one bad line: %v %v", changed, err)
	}
	x, _ := r.Current()
	if rep := x.Report(); rep.Skipped != 1 || rep.BadLines[0].Line != 42 {
		t.Fatalf("report %+v", rep)
	}
	// A file that lost half its lines is a partial one: refused, the last good one stays.
	p.publish(t, "Extraction_Correspondance_MSSante_202611290130.zip", text[:strings.LastIndexByte(text[:len(text)/2], '\n')+1])
	if _, err := r.Refresh(ctx); !errors.Is(err, ErrPartial) {
		t.Fatalf("half file: %v", err)
	}
	if x2, _ := r.Current(); x2 != x {
		t.Fatal("a partial file replaced the good one")
	}
}

// FuzzLoadBadLines: a file with any lines either is refused with a named error or loads with
// a report that counts every data line and numbers bad lines within the file.
func FuzzLoadBadLines(f *testing.F) {
	_, body, _ := strings.Cut(sample, "\n")
	f.Add(body, 0.5)
	f.Add(body+"PER|a@b.fr|8\n", 0.5)                                                       // a column too few
	f.Add(body+"PER|a@b.fr"+strings.Repeat("|y", 29)+strings.Repeat("z", 70<<10)+"\n", 0.5) // a 70 KB line
	f.Add(body+strings.Repeat("x|", 40)+"\n", 0.0)                                          // too many columns
	f.Add(body+"PER|\xff"+strings.Repeat("|", 30)+"\n", -1.0)                               // not UTF-8
	f.Add(body[:len(body)-30], 1.0)                                                         // cut mid-line
	f.Add(strings.TrimSuffix(body, "\n"), 1.0)                                              // cut after a whole line
	f.Fuzz(func(t *testing.T, body string, share float64) {
		text := HeaderLine() + "\n" + body
		x, err := Load(strings.NewReader(text), &LoadOptions{MaxSize: 1 << 20, MaxBadShare: share})
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrPartial) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		rep := x.Report()
		lines := strings.Count(text, "\n") + 1
		if rep.Lines-rep.Skipped < x.Len() || rep.Skipped > rep.Lines || len(rep.BadLines) > min(rep.Skipped, MaxReportedBadLines) {
			t.Fatalf("report %+v for %d entries", rep, x.Len())
		}
		prev := 1
		for _, b := range rep.BadLines {
			if b.Line <= prev || b.Line > lines || b.Reason == "" {
				t.Fatalf("bad line %+v after %d (of %d)", b, prev, lines)
			}
			prev = b.Line
		}
	})
}
