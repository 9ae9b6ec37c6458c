package mllp_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

func Example() {
	srv, _ := mllp.NewServer(&mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		m, err := hl7v2.Parse(b, nil)
		if err != nil {
			return nil, err
		}
		ack, err := hl7v2.Ack(m, hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "1", Time: time.Now()})
		if err != nil {
			return nil, err
		}
		return ack.Encode()
	}})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	c := mllp.Dial(l.Addr().String(), nil)
	defer c.Close()
	ack, err := c.Send(context.Background(), []byte("MSH|^~\\&|DPI|HOP|PFI|HOP|20261207093000||MDM^T02^MDM_T02|42|P|2.6\r"))
	if err != nil {
		fmt.Println(err)
		return
	}
	code, id, _ := hl7v2.AckOf(ack)
	fmt.Println(code, id)
	// Output: AA 42
}
