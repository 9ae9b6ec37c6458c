// Package examples_test holds the tests that concern every example at once.
package examples_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// devPath is a file of the sandbox folder as the examples' comments name it.
var devPath = regexp.MustCompile(`mssante-dev/[A-Za-z0-9_.\-/]*[A-Za-z0-9_]`)

// A vendor copies the commands of the examples' comments: every file they name in the folder
// of "mssante dev" exists there.
func TestCommentPathsExist(t *testing.T) {
	mains, err := filepath.Glob("*/main.go")
	if err != nil || len(mains) == 0 {
		t.Fatalf("no example found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := t.TempDir()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: filepath.Join(root, "mssante-dev")})
	if err != nil {
		t.Fatal(err)
	}
	sb.Close()
	n := 0
	for _, m := range mains {
		src, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range devPath.FindAllString(string(src), -1) {
			n++
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
				t.Errorf("%s names %s, which \"mssante dev\" does not make: %v", m, p, err)
			}
		}
	}
	if n == 0 {
		t.Error("no mssante-dev/ path found in the examples' comments")
	}
}
