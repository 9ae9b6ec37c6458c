package annuaire

import (
	"errors"
	"fmt"
	"strings"
)

// BadLine is a data line of an extraction that the load skipped. It says where and why, never
// what the line holds (names and identifiers of health professionals).
type BadLine struct {
	// Line is the line number in the file, 1 being the header.
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// LoadReport says what a load read and skipped: Skipped is the counter a caller exports as a
// metric, BadLines the first [MaxReportedBadLines] of those lines.
type LoadReport struct {
	// Lines counts the non-blank data lines read, good and bad.
	Lines    int       `json:"lines"`
	Skipped  int       `json:"skipped"`
	BadLines []BadLine `json:"badLines,omitempty"`
	// Unterminated reports a last line without its line end: the file may have been cut
	// right after a whole line. A conclusion that needs the whole file (a BAL that is no
	// longer published) must not be drawn from it.
	Unterminated bool `json:"unterminated,omitempty"`
}

// Complete reports whether nothing suggests the file was cut.
func (r *LoadReport) Complete() bool { return !r.Unterminated }

// MaxReportedBadLines bounds LoadReport.BadLines; Skipped counts them all.
const MaxReportedBadLines = 100

// DefaultMaxBadShare is the share of malformed data lines above which a file is refused when
// LoadOptions.MaxBadShare is 0: one line in a thousand.
const DefaultMaxBadShare = 0.001

// Errors of a damaged extraction.
var (
	// ErrTooManyBadLines reports a file with more malformed lines than LoadOptions.MaxBadShare
	// allows; it wraps ErrFormat too.
	ErrTooManyBadLines = errors.New("annuaire: too many malformed lines")
	// ErrPartial reports a file that was cut: its last line is malformed and has no line end,
	// or (for a Refresher) it has far fewer lines than the one in use.
	ErrPartial = errors.New("annuaire: partial extraction")
)

func (o *LoadOptions) maxBadShare() float64 {
	switch {
	case o == nil || o.MaxBadShare == 0:
		return DefaultMaxBadShare
	case o.MaxBadShare < 0:
		return 0
	}
	return o.MaxBadShare
}

// Report returns what the load of x read and skipped.
func (x *Extraction) Report() LoadReport {
	r := x.report
	r.BadLines = append([]BadLine(nil), r.BadLines...)
	return r
}

// badLine records a skipped line of a chunk; line is counted from the chunk's first line.
func (c *chunk) badLine(line int, err error) {
	c.skipped++
	if len(c.bad) < MaxReportedBadLines {
		c.bad = append(c.bad, BadLine{Line: line, Reason: strings.TrimPrefix(err.Error(), ErrFormat.Error()+": ")})
	}
}

// judge fills x's report from the chunks (whose first lines are numbered firsts) and refuses
// a cut file or one with more bad lines than allowed.
func (x *Extraction) judge(chunks []chunk, firsts []int, opts *LoadOptions) error {
	r := &x.report
	r.Unterminated = x.data != "" && x.data[len(x.data)-1] != '\n'
	for i := range chunks {
		c := &chunks[i]
		if c.cut != nil {
			return fmt.Errorf("%w: the last line (line %d) has no line end and %s", ErrPartial,
				firsts[i]+c.cutLine, strings.TrimPrefix(c.cut.Error(), ErrFormat.Error()+": "))
		}
		r.Lines += c.lines
		r.Skipped += c.skipped
		for _, b := range c.bad {
			if len(r.BadLines) < MaxReportedBadLines {
				b.Line += firsts[i]
				r.BadLines = append(r.BadLines, b)
			}
		}
	}
	if r.Skipped > 0 && float64(r.Skipped) > opts.maxBadShare()*float64(r.Lines) {
		return fmt.Errorf("%w: %w: %d of %d lines (the first, line %d: %s)", ErrFormat, ErrTooManyBadLines,
			r.Skipped, r.Lines, r.BadLines[0].Line, r.BadLines[0].Reason)
	}
	return nil
}
