package docs

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The forms of citation the test knows. Each gives the id looked up in references.md.
var citationForms = []struct {
	re *regexp.Regexp
	id func(m []string) string
}{
	{regexp.MustCompile(`\bRFC ?(\d{3,5})\b`), func(m []string) string { return "RFC " + m[1] }},
	{regexp.MustCompile(`\bR[ée]f\.? ?#(\d+)`), func(m []string) string { return "Réf. #" + m[1] }},
	{regexp.MustCompile(`\bITI TF-(\w+)`), func(m []string) string { return "ITI TF-" + m[1] }},
	{regexp.MustCompile(`\bITI-(\d+)\b`), func(m []string) string { return "ITI-" + m[1] }},
	{regexp.MustCompile(`\b(TRE|JDV|ASS)_([A-Z]\d+)`), func(m []string) string { return m[1] + "_" + m[2] }},
	{regexp.MustCompile(`\bSC\.MSS/`), func([]string) string { return "Ségur REM" }},
	{regexp.MustCompile(`\bCI-SIS ([A-Z][\w-]*)`), func(m []string) string { return "CI-SIS " + m[1] }},
}

var (
	// mdFile is a Markdown file named in a comment.
	mdFile = regexp.MustCompile(`(?:^|[\s("'\x60])((?:[\w.-]*/)*[\w.-]+\.md)\b`)
	// digest names the team's notes, which are not in the repository.
	digest = regexp.MustCompile(`(?i)\bMSSant[ée] digest\b|\bdigested in\b|\bas digested\b`)
	// time.RFC3339 and its kin are Go constants, not citations.
	timeConst = regexp.MustCompile(`\btime\.RFC\d+\w*`)
)

// readReferences returns the ids of references.md: the first cell of each table row.
func readReferences(t *testing.T) map[string]bool {
	f, err := os.Open("references.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		id := strings.TrimSpace(strings.SplitN(line[1:], "|", 2)[0])
		if id == "id" || id == "" || strings.Trim(id, "-") == "" {
			continue
		}
		if ids[id] {
			t.Errorf("references.md: %s listed twice", id)
		}
		ids[id] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// citationProblems returns what is wrong with the citations in the comments of one Go source
// file: rel is its path from the module root, root the module root (for .md files it names).
func citationProblems(rel string, src []byte, root string, ids map[string]bool) (problems []string) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return []string{err.Error()}
	}
	for _, g := range f.Comments {
		text := strings.Join(strings.Fields(g.Text()), " ")
		text = timeConst.ReplaceAllString(text, "")
		pos := fset.Position(g.Pos())
		where := rel + ":" + itoa(pos.Line)
		for _, form := range citationForms {
			for _, m := range form.re.FindAllStringSubmatch(text, -1) {
				if id := form.id(m); !ids[id] {
					problems = append(problems, where+": cites "+id+", which is not on docs/references.md")
				}
			}
		}
		for _, m := range mdFile.FindAllStringSubmatch(text, -1) {
			p := m[1]
			if filepath.IsAbs(p) || !exists(filepath.Join(root, p)) && !exists(filepath.Join(root, filepath.Dir(rel), p)) {
				problems = append(problems, where+": cites "+p+", which is not in the repository: cite the public document (docs/references.md)")
			}
		}
		if m := digest.FindString(text); m != "" {
			problems = append(problems, where+": cites the team's notes ("+m+"), which are not in the repository: cite the public document (docs/references.md)")
		}
	}
	return problems
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestCitations checks every comment of every Go file of the module: each document it cites
// in one of the known forms (RFC 5321, Réf. #2, ITI TF-3, ITI-32, TRE_R257, SC.MSS/…,
// CI-SIS LDL-SES) is on references.md, and no comment cites a Markdown file that is not in the
// repository.
func TestCitations(t *testing.T) {
	ids := readReferences(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, pr := range citationProblems(rel, src, root, ids) {
			t.Error(pr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("only %d Go files found under %s", files, root)
	}
}

// TestCitationsCatchUnknown shows that the check finds what it is meant to find.
func TestCitationsCatchUnknown(t *testing.T) {
	ids := map[string]bool{"RFC 5321": true, "Réf. #2": true}
	src := []byte(`package p

// Send follows RFC 5321 §4.5.2 and Réf. #2 ECO.1.1.3, RFC 9999 §1, Réf. #7,
// ITI TF-9, TRE_R999, see spec/mssante.md §1.2 and the MSSanté digest §5.
// time.RFC3339 is not a citation.
func Send() {}
`)
	got := citationProblems("p/p.go", src, t.TempDir(), ids)
	want := []string{"RFC 9999", "Réf. #7", "ITI TF-9", "TRE_R999", "spec/mssante.md", "MSSanté digest"}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			t.Errorf("%s not reported; got %q", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d: %q", len(got), len(want), got)
	}
}
