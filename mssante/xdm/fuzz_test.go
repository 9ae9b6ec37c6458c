package xdm

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"testing"

	"github.com/mssante-go/sdk/mssante/cda"
)

func FuzzParseMetadata(f *testing.F) {
	z := pack(f, sampleCDA(f, cda.KindLDLSES, nil))
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	meta, _ := fs.ReadFile(zr, "IHE_XDM/SUBSET01/METADATA.XML")
	f.Add(meta)
	f.Add([]byte(`<SubmitObjectsRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"><RegistryObjectList xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"/></SubmitObjectsRequest>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ss, entries, _, err := ParseMetadata(data)
		if err != nil {
			return
		}
		if ss == nil || len(entries) == 0 {
			t.Fatal("accepted metadata without submission set or entries")
		}
	})
}

func FuzzRead(f *testing.F) {
	f.Add(pack(f, sampleCDA(f, cda.KindLDLSES, nil)))
	f.Add(pack(f, sampleCDA(f, cda.KindN1, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkg, err := Read(bytes.NewReader(data), int64(len(data)), &ReadOptions{MaxTotalSize: 4 << 20})
		if err != nil {
			return
		}
		for _, s := range pkg.Subsets {
			for _, d := range s.Documents {
				if d.CDA == nil || int64(len(d.Data)) != d.Entry.Size {
					t.Fatal("accepted a document that does not match its entry")
				}
			}
		}
	})
}
