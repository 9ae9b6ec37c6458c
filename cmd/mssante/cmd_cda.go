package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mssante-go/sdk/mssante/cda"
)

const cdaUsage = `validate [--strict] FILE
       mssante cda build --from INPUT.json [--pdf FILE.pdf]
       mssante cda example [--kind ldl-ses|n1] [--json]

validate parses a CDA R2 document and runs the CI-SIS rules of package mssante/cda; it prints
each failed rule and exits 1 when one of them is an error ("ok: N rules checked" otherwise).
--strict also exits 1 on warnings (e.g. an idNat_PS whose check digit fails).

build reads the builder input as JSON and writes the CDA to stdout. The JSON form is the
cda.Input type: print a complete one with "mssante cda example --kind ldl-ses --json".
Times are RFC 3339. For kind n1 the PDF is "pdf" (base64), or "pdfFile" (a path relative to
the JSON file), or --pdf.

example prints a complete document (or, with --json, its builder input) made from fictitious
data: test INS (OID 1.2.250.1.213.1.4.10), test RPPS and FINESS.`

func runCDA(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(*env, []string) error{"validate": cdaValidate, "build": cdaBuild, "example": cdaExample}
	if len(args) == 0 || subs[args[0]] == nil {
		newFlagSet(e, "cda", cdaUsage).Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitCode(2, nil)
	}
	return subs[args[0]](e, args[1:])
}

func cdaValidate(e *env, args []string) error {
	fs := newFlagSet(e, "cda validate", "[--strict] FILE")
	strict := fs.Bool("strict", false, "also exit 1 on warnings")
	if err := fs.Parse(args); err != nil {
		return cdaFlagErr(err)
	}
	if fs.NArg() != 1 {
		return usageError(fs, "give one CDA document to validate, after the options")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := cda.Parse(f, nil)
	if err != nil {
		return err
	}
	r := cda.Validate(d)
	for _, finding := range r.Findings {
		fmt.Fprintln(e.stdout, finding)
	}
	if !r.OK() {
		return exitCode(1, fmt.Errorf("%d rule(s) failed", len(r.Errors())))
	}
	if *strict && len(r.Findings) > 0 {
		return exitCode(1, fmt.Errorf("%d warning(s) in strict mode", len(r.Findings)))
	}
	kind := "structured"
	if d.IsN1() {
		kind = "N1"
	}
	fmt.Fprintf(e.stdout, "ok: %d rules checked, %s document, code %s\n", len(r.Checked), kind, d.Code.Code)
	return nil
}

// cdaInputJSON is the JSON form: cda.Input plus a PDF given by path.
type cdaInputJSON struct {
	cda.Input
	PDFFile string `json:"pdfFile,omitempty"`
}

func cdaBuild(e *env, args []string) error {
	fs := newFlagSet(e, "cda build", "--from INPUT.json [--pdf FILE.pdf]")
	from := fs.String("from", "", "builder input as JSON (- for stdin)")
	pdf := fs.String("pdf", "", "PDF to wrap (kind n1)")
	if err := fs.Parse(args); err != nil {
		return cdaFlagErr(err)
	}
	if *from == "" || fs.NArg() != 0 {
		return usageError(fs, "--from INPUT.json is required (- for stdin), and no argument is expected")
	}
	var raw []byte
	var err error
	if *from == "-" {
		var b bytes.Buffer
		_, err = b.ReadFrom(e.stdin)
		raw = b.Bytes()
	} else {
		raw, err = os.ReadFile(*from)
	}
	if err != nil {
		return err
	}
	var in cdaInputJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("input JSON: %w", err)
	}
	if in.PDFFile != "" {
		p := in.PDFFile
		if !filepath.IsAbs(p) && *from != "-" {
			p = filepath.Join(filepath.Dir(*from), p)
		}
		if in.PDF, err = os.ReadFile(p); err != nil {
			return err
		}
	}
	if *pdf != "" {
		if in.PDF, err = os.ReadFile(*pdf); err != nil {
			return err
		}
	}
	d, err := cda.Build(&in.Input)
	if err != nil {
		return err
	}
	return cda.Encode(e.stdout, d)
}

func cdaExample(e *env, args []string) error {
	fs := newFlagSet(e, "cda example", "[--kind ldl-ses|n1] [--json]")
	kind := fs.String("kind", "ldl-ses", "ldl-ses or n1")
	asJSON := fs.Bool("json", false, "print the builder input (the JSON form of cda build) instead")
	if err := fs.Parse(args); err != nil {
		return cdaFlagErr(err)
	}
	if fs.NArg() != 0 || (*kind != string(cda.KindLDLSES) && *kind != string(cda.KindN1)) {
		return usageError(fs, "--kind is %s or %s, and no argument is expected", cda.KindLDLSES, cda.KindN1)
	}
	in := cda.Sample(cda.Kind(*kind))
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	d, err := cda.Build(in)
	if err != nil {
		return err
	}
	return cda.Encode(e.stdout, d)
}

// cdaFlagErr maps a flag parse error to the exit status: 0 for --help, 2 otherwise.
func cdaFlagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return exitCode(2, nil)
}
