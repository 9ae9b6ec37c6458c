package bal_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// A DPI sends a lettre de liaison from its applicative BAL. The certificate, the trust store
// and the verified liste blanche come from the DPI's configuration.
func ExampleClient_Send() {
	var (
		cert  tls.Certificate       // the BAL's IGC-Santé ORG certificate (transport.PKCS12Certificate)
		trust *transport.TrustStore // transport.NewTrustStore(nil) plus the CRLs
		list  *whitelist.List       // whitelist.Verify of the ANS liste blanche
	)
	c, err := bal.New(&bal.Options{
		Address:    "dpi@hopital.example.mssante.fr",
		Submission: bal.Endpoint{Addr: "smtp.operateur.example:587"}, // or DNS SRV discovery when empty
		IMAP:       bal.Endpoint{Addr: "imap.operateur.example:993", Security: bal.ImplicitTLS},
		TLS:        transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust},
		Whitelist:  list,
		StateDir:   "/var/lib/dpi/mssante",
		NIL:        "DEV935997",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	in := cda.Sample(cda.KindN1) // the DPI fills cda.Input from its records
	msg, err := bal.NewDocumentMessage(mssante.MustAddress("DPI", "dpi@hopital.example.mssante.fr"),
		[]mssante.Address{mssante.MustAddress("", "dr.martin@medecin.example.mssante.fr")}, in,
		&bal.DocumentOptions{WantMDN: true})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Send(ctx, msg, nil)
	if errors.Is(err, bal.ErrNotWhitelisted) {
		log.Fatal("recipient outside MSSanté: nothing sent")
	}
	if err != nil {
		log.Fatal(err) // sending msg again later sends it once: msg.MessageID is now set
	}
	for _, r := range res.Recipients {
		log.Println(r.Address, r.Accepted, r.Code)
	}
}

// The receiving DPI integrates each new message once, refusing those about a patient it
// does not know; receipts of what it sent come on the same watch.
func ExampleClient_Watch() {
	var c *bal.Client // bal.New as in the Send example
	known := map[string]bool{}
	err := c.Watch(context.Background(), func(ctx context.Context, m *bal.Incoming) error {
		if m.INS.IsZero() {
			return bal.Reject(mssante.CodeNoINS)
		}
		if !known[m.INS.Value] {
			return bal.Reject(mssante.CodeUnknownPatient)
		}
		for _, d := range m.Documents() {
			_ = d.CDA // file the CDA (d.Data) in the patient's record
		}
		return nil // accepted: an MDN "processed" goes back when asked for
	}, &bal.WatchOptions{OnReceipt: func(ctx context.Context, r bal.Receipt) {
		if r.Final {
			log.Println(r.MessageID, r.Recipient, r.Status, r.SMTPCode, r.MDNCode)
		}
	}})
	log.Println(err)
}
