package xdm_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
)

func Example() {
	doc, _ := cda.Build(cda.Sample(cda.KindLDLSES))
	data, _ := cda.Marshal(doc)

	var zip bytes.Buffer
	now := func() time.Time { return time.Date(2026, 3, 12, 11, 0, 0, 0, time.UTC) }
	if _, err := xdm.Pack(&zip, [][]byte{data}, &xdm.PackOptions{Now: now}); err != nil {
		fmt.Println(err)
		return
	}
	pkg, err := xdm.Read(bytes.NewReader(zip.Bytes()), int64(zip.Len()), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := pkg.Subsets[0].Documents[0]
	fmt.Println(d.Path, d.Entry.TypeCode.Code, d.Entry.FormatCode.Code, d.Entry.PatientID.OID)
	// Output:
	// IHE_XDM/SUBSET01/DOC0001.XML 11490-0 urn:asip:ci-sis:ldl-ses:2017 1.2.250.1.213.1.4.10
}
