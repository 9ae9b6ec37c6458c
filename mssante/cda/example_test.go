package cda_test

import (
	"bytes"
	"fmt"

	"github.com/mssante-go/sdk/mssante/cda"
)

func Example() {
	in := cda.Sample(cda.KindLDLSES) // fictitious patient and professionals
	doc, err := cda.Build(in)
	if err != nil {
		fmt.Println(err)
		return
	}
	xml, _ := cda.Marshal(doc)
	back, err := cda.Parse(bytes.NewReader(xml), &cda.ParseOptions{Strict: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	ins, _ := back.INS()
	fmt.Println(back.Code.Code, ins.OID, cda.Validate(back).OK())

	in.Title = ""
	_, err = cda.Build(in)
	fmt.Println(err)
	// Output:
	// 11490-0 1.2.250.1.213.1.4.10 true
	// cda: cannot build document: title: required
}
