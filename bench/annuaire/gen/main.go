// Command gen writes a synthetic Extraction_Correspondance_MSSante file (package
// annuaire/annuairetest): gen -lines 536000 -seed 1 -o /tmp/extraction.txt
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mssante-go/sdk/annuaire/annuairetest"
)

func main() {
	lines := flag.Int("lines", annuairetest.FullSize, "data lines")
	seed := flag.Uint64("seed", 1, "random seed: the same seed gives the same file")
	out := flag.String("o", "", "output file (default stdout)")
	flag.Parse()
	w := os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := annuairetest.WriteExtraction(w, *lines, *seed); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
