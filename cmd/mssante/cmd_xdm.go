package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
)

const xdmUsage = `pack --cda FILE [--cda FILE…] -o IHE_XDM.ZIP [--now TIME]
       mssante xdm inspect [--extract DIR] [--json] IHE_XDM.ZIP

pack writes an IHE XDM archive holding the CDA documents (one patient), with README.TXT,
INDEX.HTM and IHE_XDM/SUBSET01/METADATA.XML derived from the CDA headers. --now fixes the
submission time (RFC 3339) for reproducible output.

inspect opens an archive with the safe reader of package mssante/xdm and prints its
submission sets, document metadata, patient INS and checks (hash, size, patient, CDA rules);
known defects of the ANS reference packages are printed as warnings. It exits 1 when the
archive is refused (unsafe entry, limit, metadata, hash, size or patient mismatch); CDA rule
failures are printed, and also exit 1 with --strict-cda. --extract writes the documents to DIR.
With --json, inspect prints one JSON object a line instead of text:
  {"type":"subset","subset":"SUBSET01","unique_id":…,"submission_time":…,"source_id":…,
   "content_type":…,"ins":…,"ins_oid":…}
  {"type":"document","subset":…,"path":…,"title":…,"unique_id":…,"size":…,"sha1":…,
   "type_code":…,"class_code":…,"format_code":…,"ins":…,"ins_oid":…,"creation_time":…,
   "cda_ok":true|false,"cda_rules":…,"findings":[…]}
  {"type":"warning","text":…}`

func runXDM(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(*env, []string) error{"pack": xdmPack, "inspect": xdmInspect}
	if len(args) == 0 || subs[args[0]] == nil {
		newFlagSet(e, "xdm", xdmUsage).Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitCode(2, nil)
	}
	return subs[args[0]](e, args[1:])
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func xdmPack(e *env, args []string) error {
	fs := newFlagSet(e, "xdm pack", "--cda FILE [--cda FILE…] -o IHE_XDM.ZIP [--now TIME]")
	var files multiFlag
	fs.Var(&files, "cda", "CDA document to include (repeatable)")
	out := fs.String("o", "", "archive to write")
	now := fs.String("now", "", "submission time, RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		return cdaFlagErr(err)
	}
	switch {
	case len(files) == 0:
		return usageError(fs, "--cda FILE is required: the CDA documents to pack")
	case *out == "":
		return usageError(fs, "-o FILE is required: the archive to write")
	case fs.NArg() != 0:
		return usageError(fs, "unexpected argument %q: give each document with --cda", fs.Arg(0))
	}
	opts := &xdm.PackOptions{}
	if *now != "" {
		t, err := time.Parse(time.RFC3339, *now)
		if err != nil {
			return exitCode(2, fmt.Errorf("--now: %w", err))
		}
		opts.Now = func() time.Time { return t }
	}
	var docs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs = append(docs, b)
	}
	var buf bytes.Buffer
	packed, err := xdm.Pack(&buf, docs, opts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "ok: %s, %d document(s), %d bytes\n", *out, len(packed.Documents), buf.Len())
	return nil
}

func xdmInspect(e *env, args []string) error {
	fs := newFlagSet(e, "xdm inspect", "[--extract DIR] [--json] IHE_XDM.ZIP")
	asJSON := fs.Bool("json", false, "print one JSON object a line (fields in \"mssante xdm --help\")")
	extract := fs.String("extract", "", "write the documents to this directory")
	strictCDA := fs.Bool("strict-cda", false, "also exit 1 when a document fails a CDA rule")
	if err := fs.Parse(args); err != nil {
		return cdaFlagErr(err)
	}
	if fs.NArg() != 1 {
		return usageError(fs, "give one IHE_XDM.ZIP to inspect, after the options")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pkg, err := xdm.Read(f, st.Size(), nil)
	if err != nil {
		return exitCode(1, err)
	}
	w := e.stdout
	if *asJSON {
		w = io.Discard
	}
	failed := 0
	for _, s := range pkg.Subsets {
		ss := s.SubmissionSet
		fmt.Fprintf(w, "subset %s: submission set %s\n", s.Name, ss.UniqueID)
		fmt.Fprintf(w, "  submissionTime %s  sourceId %s  contentType %s (%s)\n", ss.SubmissionTime, ss.SourceID, ss.ContentType.Code, ss.ContentType.Scheme)
		fmt.Fprintf(w, "  patient INS %s (OID %s)\n", ss.PatientID.Value, ss.PatientID.OID)
		if *asJSON {
			jsonLine(e.stdout, xdmSubsetJSON{"subset", s.Name, ss.UniqueID, ss.SubmissionTime, ss.SourceID, ss.ContentType.Code,
				ss.PatientID.Value, ss.PatientID.OID})
		}
		for _, d := range s.Documents {
			en := d.Entry
			fmt.Fprintf(w, "  document %s: %q\n", d.Path, en.Title)
			fmt.Fprintf(w, "    uniqueId %s  size %d  sha1 %s (checked)\n", en.UniqueID, en.Size, strings.ToLower(en.Hash))
			fmt.Fprintf(w, "    typeCode %s  classCode %s  formatCode %s\n", en.TypeCode.Code, en.ClassCode.Code, en.FormatCode.Code)
			fmt.Fprintf(w, "    patient INS %s (OID %s)  creationTime %s\n", en.PatientID.Value, en.PatientID.OID, en.CreationTime)
			r := cda.Validate(d.CDA)
			for _, fnd := range r.Findings {
				fmt.Fprintf(w, "    %s\n", fnd)
			}
			if *asJSON {
				line := xdmDocJSON{Type: "document", Subset: s.Name, Path: d.Path, Title: en.Title, UniqueID: en.UniqueID, Size: en.Size,
					SHA1: strings.ToLower(en.Hash), TypeCode: en.TypeCode.Code, ClassCode: en.ClassCode.Code, FormatCode: en.FormatCode.Code,
					INS: en.PatientID.Value, INSOID: en.PatientID.OID, CreationTime: en.CreationTime, CDAOK: r.OK(), CDARules: len(r.Checked)}
				for _, fnd := range r.Findings {
					line.Findings = append(line.Findings, fmt.Sprint(fnd))
				}
				jsonLine(e.stdout, line)
			}
			if r.OK() {
				fmt.Fprintf(w, "    CDA: ok (%d rules)\n", len(r.Checked))
			} else {
				fmt.Fprintf(w, "    CDA: %d rule(s) failed (see mssante cda validate)\n", len(r.Errors()))
				failed++
			}
			if *extract != "" {
				if err := os.MkdirAll(*extract, 0o700); err != nil {
					return err
				}
				// Entry URIs were checked to be bare names by the reader.
				if err := os.WriteFile(filepath.Join(*extract, s.Name+"_"+filepath.Base(en.URI)), d.Data, 0o600); err != nil {
					return err
				}
			}
		}
	}
	for _, wn := range pkg.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
		if *asJSON {
			jsonLine(e.stdout, xdmWarningJSON{"warning", wn})
		}
	}
	if failed > 0 && *strictCDA {
		return exitCode(1, errors.New("a document fails the CDA rules"))
	}
	fmt.Fprintln(w, "ok")
	return nil
}

// The --json lines of "mssante xdm inspect".
type xdmSubsetJSON struct {
	Type           string `json:"type"` // "subset"
	Subset         string `json:"subset"`
	UniqueID       string `json:"unique_id"`
	SubmissionTime string `json:"submission_time"`
	SourceID       string `json:"source_id"`
	ContentType    string `json:"content_type"`
	INS            string `json:"ins"`
	INSOID         string `json:"ins_oid"`
}

type xdmDocJSON struct {
	Type         string   `json:"type"` // "document"
	Subset       string   `json:"subset"`
	Path         string   `json:"path"`
	Title        string   `json:"title"`
	UniqueID     string   `json:"unique_id"`
	Size         int64    `json:"size"`
	SHA1         string   `json:"sha1"`
	TypeCode     string   `json:"type_code"`
	ClassCode    string   `json:"class_code"`
	FormatCode   string   `json:"format_code"`
	INS          string   `json:"ins"`
	INSOID       string   `json:"ins_oid"`
	CreationTime string   `json:"creation_time"`
	CDAOK        bool     `json:"cda_ok"`
	CDARules     int      `json:"cda_rules"`
	Findings     []string `json:"findings,omitempty"`
}

type xdmWarningJSON struct {
	Type string `json:"type"` // "warning"
	Text string `json:"text"`
}
