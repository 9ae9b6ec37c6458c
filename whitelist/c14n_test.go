package whitelist

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
)

// canonicalize runs the streaming exc-c14n over a whole document, with the namespace tracking
// of the parser, whatever its elements.
func canonicalize(doc []byte) ([]byte, error) {
	var p parser
	var out bytes.Buffer
	c := c14n{w: bufio.NewWriter(&out)}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var marks []int
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			marks = append(marks, len(p.ns))
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					p.ns = append(p.ns, nsBinding{"", a.Value})
				case a.Name.Space == "xmlns":
					p.ns = append(p.ns, nsBinding{a.Name.Local, a.Value})
				}
			}
			if err := c.start(&t, p.resolve); err != nil {
				return nil, err
			}
		case xml.EndElement:
			c.end(t.Name)
			p.ns = p.ns[:marks[len(marks)-1]]
			marks = marks[:len(marks)-1]
		case xml.CharData:
			if len(marks) > 0 {
				c.text(t)
			}
		}
	}
	c.w.Flush()
	return out.Bytes(), nil
}

// TestExcC14NAgainstXmllint compares the canonical form of documents that exercise the rules
// of exc-c14n (namespaces, attribute order, escaping, CDATA) with libxml2's. (xmllint keeps
// comments, the Reference URI="" of the ANS profile removes them: TestExcC14NComments.)
func TestExcC14NAgainstXmllint(t *testing.T) {
	xmllint := testenv.Require(t, "xmllint")
	docs := []string{
		`<a xmlns="urn:1"><b xmlns="urn:2"><c xmlns="urn:1"/></b><d xmlns=""><e/></d></a>`,
		`<p:a xmlns:p="urn:p" xmlns:q="urn:q" xmlns:unused="urn:u" q:z="1" y="2" p:x="3" a="0"><p:b/><c xmlns:p="urn:w" p:k="1"/><q:d/></p:a>`,
		"<a>&lt;&gt;&amp;\"'&#13;&#9;\r\n x]]&gt; \u00e9\U0001F600</a>",
		`<a b="&quot;&lt;&gt;&amp;'&#9;&#10;&#13;" c='"'/>`,
		`<a><![CDATA[<x>&]]>y</a>`,
		`<a xml:lang="fr"><b/></a>`,
		`<?xml version="1.0" encoding="UTF-8"?>` + "\n<a xmlns=\"\"/>\n",
		`<x:a xmlns:x="urn:x" xmlns="urn:d"><b x:c="1"><x:d xmlns:x="urn:x"/></b></x:a>`,
	}
	dir := t.TempDir()
	for i, d := range docs {
		f := filepath.Join(dir, "doc.xml")
		if err := os.WriteFile(f, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
		want, err := exec.Command(xmllint, "--exc-c14n", f).Output()
		if err != nil {
			t.Fatalf("doc %d: xmllint: %v", i, err)
		}
		got, err := canonicalize([]byte(d))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("doc %d:\nours    %q\nxmllint %q", i, got, want)
		}
	}
}

func TestExcC14NComments(t *testing.T) {
	got, err := canonicalize([]byte("<!-- a --><a>x<!-- b -->y<b/><!--c--></a><!-- d -->"))
	if err != nil || string(got) != "<a>xy<b></b></a>" {
		t.Fatalf("got %q, %v", got, err)
	}
}
