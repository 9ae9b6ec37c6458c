package hl7v2_test

import (
	"fmt"
	"time"

	"github.com/mssante-go/sdk/mssante/hl7v2"
)

func Example() {
	req, err := hl7v2.Parse([]byte("MSH|^~\\&|DPI|HOP|PFI|HOP|20261207093000||MDM^T02^MDM_T02|42|P|2.6\r"+
		"PRT||UC||RCT^^participation|||||||||||^NET^X.400^dr.x@hop.mssante.fr\r"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(req.ControlID(), req.Segment("PRT").Get(15, 4))
	ack, _ := hl7v2.Ack(req, hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "43", Time: time.Date(2026, 12, 7, 9, 30, 1, 0, time.UTC)})
	out, _ := ack.Encode()
	fmt.Printf("%q\n", out)
	// Output:
	// 42 dr.x@hop.mssante.fr
	// "MSH|^~\\&|PFI|HOP|DPI|HOP|20261207093001||ACK^T02^ACK|43|P|2.6\rMSA|AA|42\r"
}
