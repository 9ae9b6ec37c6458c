// Package hl7bridge turns the HL7v2 messages of a DPI into MSSanté mail sent from the DPI's
// BAL applicative, as CI-SIS Trans-CDA-R2 describes the "GESTIONNAIRE" (PFI) role: an
// MDM^T02 or T10 (v2.6) or an ORU^R01 (v2.5) carrying a CDA document in OBX becomes one mail
// built by bal (IHE_XDM.ZIP with the CDA and its PDF copy, X-MSS-* headers), from the BAL of
// Options.Client to the addresses of the PRT segments whose role is RCT (PRT-15.4), and the
// answer is the ACK of the guide: AA once bal has durably queued the mail, AE with an ERR
// naming the cause when the message is refused, AR when it could not be taken in charge for
// now (the DPI sends it again, with the same MSH-10).
//
// Safe readings where the guide is silent, documented here:
//   - a message is refused whole: one recipient off the liste blanche, an unparsable address,
//     a CDA that does not parse, an INS in PID that is missing, invalid or different from the
//     CDA's, and nothing is mailed to anyone (AE, ERR-3 207 with ERR-5 from the guide's
//     tables: the SMTP code 550 for a refused recipient, 903/904 for the INS);
//   - a message is sent once per MSH-3, MSH-4 and MSH-10: its Message-ID is derived from them,
//     so a resend after a lost ACK is recognised by bal's outbox, and the final ACK is kept in
//     Options.StateDir and answered again without a second mail; an MSH-10 longer than 64
//     bytes (the Message-ID carries it) is refused AE 101;
//   - the MetaDMPMSS indicators are obeyed: no patient address for a document invisible to the
//     patient (or not meant for the patient's mailbox), no professional address for one masked
//     to professionals (or not meant for them);
//   - the action a message asks of its document is read, as the guide's "Evénements
//     déclenchants" say, from the MDM event (T02 first transmission, T10 replacement, T04
//     deletion) or, in an ORU^R01, from OBX-11 (F, C, D); OBX-11 of every CDA, ORC-1 (NW, RO,
//     CA) and the event must agree, else the message is refused (AE 207 naming the field), as
//     the guide's ORC section requires of the PFI; a message without ORC, which the guide
//     requires, is still read from the event and OBX-11, which then say the action alone;
//   - a replacement (MDM^T10, or OBX-11 C) is one mail carrying the new version, whose XDM
//     metadata hold the RPLC association to the replaced entry (mssante/xdm maps it from the
//     CDA's relatedDocument RPLC). The CDA must carry that relatedDocument: without it the
//     recipient would take the new version for a second original, so it is refused (AE 101),
//     as the guide's example carries it; an MDM's TXA-13 (required for a replacement) must
//     name the same parent document, and TXA-12, when given, the CDA's id (the guide's EI
//     rule: extension in component 1 and root in component 3, or the root alone). A first
//     transmission whose CDA replaces another is refused too. The default body says it is a
//     new version, since the guide asks the PFI for one in a replacement;
//   - a deletion (MDM^T04, or OBX-11 D) is refused (AE 201, or AE 207 on OBX-11 for an ORU):
//     the guide mails it to the recipients but neither it nor Trans-CDA-MSS says how a mail
//     marks a document as withdrawn, and a mail that looks like a new transmission of the
//     document to delete would do the opposite of what the DPI asks;
//   - an NTE whose NTE-4 is FIN after the DESTMSSANTEPAT OBX is X-MSS-MES: FIN (the patient
//     may not reply), as the guide's MSSanté mapping says; it is set only when the mail has a
//     patient recipient, the header being meant for the patient's mailbox.
//
// Bridge.Handle is an mllp.Handler: serve it with mllp.NewServer. Bridge.OnReceipt turns the
// receipts bal collects into the ZAM^Z02 and ZAM^Z03 of the guide, queued durably and sent to
// the DPI by Bridge.Run. In the
// other direction, Bridge.Deliver, a bal.Handler, hands each document received on the BAL
// to the DPI as CI-SIS Trans-CDA-MSS says and turns the DPI's ACK into the MDN.
package hl7bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
	"github.com/mssante-go/sdk/mssante/xdm"
)

// Options configure a Bridge.
type Options struct {
	// Client is the bal client of the DPI's BAL applicative; required.
	Client *bal.Client
	// From is the address of that BAL; required.
	From mssante.Address
	// StateDir keeps the final ACK of each message (by MSH-3, MSH-4, MSH-10); required.
	StateDir string
	// Application and Facility are MSH-3 and MSH-4 of the ZAMs and of the messages to the
	// DPI (default "MSSANTE"), and of the ACKs when set (by default an ACK's are the MSH-5
	// and MSH-6 of the message it answers, as in the guide's examples).
	Application, Facility string
	// NIL is X-MSS-NIL; default the one of the bal client's Options.
	NIL string
	// DPI is the MLLP client of the DPI's endpoint that receives the ZAM^Z02 and ZAM^Z03
	// business acknowledgements (OnReceipt); nil sends none.
	DPI *mllp.Client
	// MaxRetryWait caps the backoff between two attempts at a ZAM (default 5 minutes).
	MaxRetryWait time.Duration
	// Limits bound the reading of a message; nil = hl7v2 defaults.
	Limits *hl7v2.ReadOptions
	Now    func() time.Time
	Logger *slog.Logger
}

// Bridge is the DPI → MSSanté direction of the platform.
type Bridge struct {
	opts    Options
	log     *slog.Logger
	zamKick chan struct{}
	// ackApp and ackFac override MSH-3 and MSH-4 of the ACKs when set.
	ackApp, ackFac string
	locks          [64]sync.Mutex
	seq            struct {
		sync.Mutex
		n uint64
	}
}

// New checks the options and creates the state folder (0700).
func New(opts *Options) (*Bridge, error) {
	if opts == nil || opts.Client == nil || opts.From.Addr == "" || opts.StateDir == "" {
		return nil, errors.New("hl7bridge: Options.Client, From and StateDir are required")
	}
	o := *opts
	ackApp, ackFac := o.Application, o.Facility
	if o.Application == "" {
		o.Application = "MSSANTE"
	}
	if o.Facility == "" {
		o.Facility = "MSSANTE"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxRetryWait <= 0 {
		o.MaxRetryWait = 5 * time.Minute
	}
	for _, d := range []string{"acks", filepath.Join("zam", "refused")} {
		if err := os.MkdirAll(filepath.Join(o.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("hl7bridge: %w", err)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bridge{opts: o, log: log, zamKick: make(chan struct{}, 1), ackApp: ackApp, ackFac: ackFac}, nil
}

// refusal is a reason to answer AE or AR, with the ERR segment that says it.
type refusal struct {
	code string
	err  hl7v2.ErrorDetail
	why  string // for the log: no health data
}

func (r *refusal) Error() string { return "hl7bridge: " + r.why }

func refuse(cond int, seg string, field int, why string) *refusal {
	return &refusal{code: hl7v2.AckError, why: why,
		err: hl7v2.ErrorDetail{Segment: seg, Sequence: 1, Field: field, Condition: cond}}
}

// Handle takes one HL7v2 message and returns its ACK. It returns an error (the connection is
// closed unanswered) only when not even an ACK can be written.
func (b *Bridge) Handle(ctx context.Context, raw []byte) ([]byte, error) {
	req, err := hl7v2.Parse(raw, b.opts.Limits)
	if err != nil {
		b.log.Warn("hl7bridge: unreadable message", "err", err)
		return b.ack(mshOnly(raw), refuse(hl7v2.CondOtherHL7, "", 0, "unreadable message"))
	}
	key := b.key(req)
	l := &b.locks[key[0]%64]
	l.Lock()
	defer l.Unlock()
	if done, err := os.ReadFile(b.ackPath(key)); err == nil {
		b.log.Info("hl7bridge: duplicate answered from the journal", "control_id", req.ControlID())
		return done, nil
	}
	out, err := b.ack(req, b.process(ctx, req, key))
	if err != nil {
		return nil, err
	}
	// The journal spares a resend the work of a second Send; it needs no fsync: if a crash
	// loses it, the resend reaches bal, whose outbox knows the Message-ID and mails no one
	// twice.
	if code, _, _ := hl7v2.AckOf(mustParse(out)); code != hl7v2.AckReject && req.ControlID() != "" {
		if err := writeFile(b.ackPath(key), out); err != nil {
			b.log.Warn("hl7bridge: journal write failed", "err", err)
		}
	}
	return out, nil
}

// Oversize answers a message longer than the MLLP server's cap (mllp.Options.Oversize) with an
// AE 199 built from its MSH, so that the DPI stops resending it.
func (b *Bridge) Oversize(ctx context.Context, head []byte) ([]byte, error) {
	return b.ack(mshOnly(head), refuse(hl7v2.CondOtherHL7, "", 0, "message too large"))
}

// mshOnly reads the first segment alone, so that a refusal names the message's MSH-10; nil
// when even that is unreadable (the ACK then has an empty MSA-2).
func mshOnly(raw []byte) *hl7v2.Message {
	head := raw
	if i := bytes.IndexAny(raw, "\r\n"); i >= 0 {
		head = raw[:i]
	}
	m, err := hl7v2.Parse(head, nil)
	if err != nil {
		return nil
	}
	return m
}

func mustParse(b []byte) *hl7v2.Message {
	m, err := hl7v2.Parse(b, nil)
	if err != nil {
		return &hl7v2.Message{}
	}
	return m
}

// key identifies a message for the duplicate check and its Message-ID.
func (b *Bridge) key(m *hl7v2.Message) string {
	h := sha256.Sum256([]byte(m.Header(3, 1) + "\x00" + m.Header(4, 1) + "\x00" + m.ControlID()))
	return hex.EncodeToString(h[:16])
}

func (b *Bridge) ackPath(key string) string { return filepath.Join(b.opts.StateDir, "acks", key) }

func (b *Bridge) ack(req *hl7v2.Message, r *refusal) ([]byte, error) {
	o := hl7v2.AckOptions{Code: hl7v2.AckAccept, Time: b.opts.Now(), ControlID: b.controlID()}
	if r != nil {
		o.Code = r.code
		o.Errors = []hl7v2.ErrorDetail{r.err}
	}
	m, err := hl7v2.Ack(req, o)
	if err != nil {
		return nil, err
	}
	msh := m.Segments[0]
	if b.ackApp != "" || req == nil {
		msh.Set(3, b.opts.Application)
	}
	if b.ackFac != "" || req == nil {
		msh.Set(4, b.opts.Facility)
	}
	return m.Encode()
}

func (b *Bridge) controlID() string {
	b.seq.Lock()
	defer b.seq.Unlock()
	b.seq.n++
	return "PFI" + strconv.FormatInt(b.opts.Now().UnixMilli(), 36) + strconv.FormatUint(b.seq.n, 36)
}

// process checks the message, builds the mail and hands it to bal; nil means AA.
func (b *Bridge) process(ctx context.Context, req *hl7v2.Message, key string) *refusal {
	code, event := req.Type()
	version := req.Header(12, 1)
	switch {
	case code == "MDM" && (event == "T02" || event == "T10"), code == "ORU" && event == "R01":
	case code != "MDM" && code != "ORU":
		return refuse(hl7v2.CondUnsupportedType, "MSH", 9, "unsupported message type")
	default:
		return refuse(hl7v2.CondUnsupportedEvent, "MSH", 9, "unsupported event")
	}
	if id := req.ControlID(); id == "" || len(id) > 64 {
		return refuse(hl7v2.CondRequiredField, "MSH", 10, "MSH-10 missing or longer than 64 bytes")
	}
	if !strings.HasPrefix(version, "2.5") && !strings.HasPrefix(version, "2.6") {
		return refuse(hl7v2.CondUnsupportedVersion, "MSH", 12, "unsupported version")
	}
	act, r := requestedAction(req)
	if r != nil {
		return r
	}
	ins, r := patientINS(req)
	if r != nil {
		return r
	}
	to, r := recipients(req)
	if r != nil {
		return r
	}
	if r := visibility(req, to); r != nil {
		return r
	}
	mail, docs, r := documents(req)
	if r != nil {
		return r
	}
	for _, d := range docs {
		if got, ok := d.INS(); !ok || got.Value != ins.Value {
			r := refuse(hl7v2.CondApplication, "PID", 3, "INS of PID differs from the CDA's")
			r.err.AppCode, r.err.AppText, r.err.AppCodeSystem = "904", "INS du message différent de celui du document", "applicationErrorCode"
			return r
		}
	}
	if r := replacement(req, docs, act); r != nil {
		return r
	}
	msg := &mssante.Message{From: b.opts.From, To: to, Text: bodyText(req), NIL: b.opts.NIL, WantMDN: yes(req, "ACK_LECTURE_MSS"),
		EndOfMessaging: endOfMessaging(req) && slices.ContainsFunc(to, mssante.Address.IsPatient)}
	if msg.ReplyTo, r = participants(req, "REPLY"); r != nil && r.err.Condition != hl7v2.CondRequiredField {
		return r
	}
	if msg.Text == "" && act == actReplace {
		msg.Text = "Veuillez trouver ci-joint la nouvelle version d'un document médical ; elle remplace la version transmise précédemment.\n"
	} else if msg.Text == "" {
		msg.Text = "Veuillez trouver ci-joint un document médical.\n"
	}
	_, err := xdm.Compose(msg, mail, &xdm.PackOptions{Now: b.opts.Now})
	if err == nil {
		msg.Subject, err = mssante.DocumentSubject(msg.Patient, msg.Documents)
	}
	if err != nil {
		b.log.Warn("hl7bridge: mail not built", "err", err)
		return refuse(hl7v2.CondApplication, "OBX", 5, "document refused")
	}
	// The Message-ID carries the MSH-10 the ZAMs name (OBX-4), so that a receipt finds it
	// without a journal that a crash could lose.
	msg.MessageID = "hl7-" + key + "-" + hex.EncodeToString([]byte(req.ControlID())) + "@" + b.opts.From.Domain()
	res, err := b.opts.Client.Send(ctx, msg, nil)
	return b.outcome(res, err)
}

// outcome maps bal's result to the ACK: a refusal before any sending is AE; a transient
// failure AR (the resend retries only the recipients not yet accepted).
func (b *Bridge) outcome(res *bal.SendResult, err error) *refusal {
	switch {
	case err == nil:
		for _, rr := range res.Recipients {
			if !rr.Accepted && rr.Temporary {
				return &refusal{code: hl7v2.AckReject, why: "recipient deferred",
					err: hl7v2.ErrorDetail{Condition: hl7v2.CondApplication, AppCode: strconv.Itoa(rr.Code), AppText: "Destinataire différé", AppCodeSystem: "SMTPERRORCODE"}}
			}
		}
		return nil
	case errors.Is(err, bal.ErrNotWhitelisted):
		r := refuse(hl7v2.CondApplication, "PRT", 15, "recipient not in the liste blanche")
		r.err.AppCode, r.err.AppText, r.err.AppCodeSystem = "550", "Destinataire hors liste blanche MSSanté", "SMTPERRORCODE"
		return r
	case errors.Is(err, bal.ErrMessage), errors.Is(err, bal.ErrConfig):
		b.log.Warn("hl7bridge: message refused by bal", "err", err)
		return refuse(hl7v2.CondApplication, "", 0, "message refused by bal")
	case errors.Is(err, bal.ErrAllRejected) && res != nil && !anyTemporary(res):
		r := refuse(hl7v2.CondApplication, "PRT", 15, "every recipient refused")
		if len(res.Recipients) > 0 {
			r.err.AppCode, r.err.AppText, r.err.AppCodeSystem = strconv.Itoa(res.Recipients[0].Code), "Destinataire refusé", "SMTPERRORCODE"
		}
		return r
	default:
		b.log.Warn("hl7bridge: message not queued, the DPI will resend", "err", err)
		return &refusal{code: hl7v2.AckReject, why: "not queued", err: hl7v2.ErrorDetail{Condition: hl7v2.CondApplication}}
	}
}

func anyTemporary(res *bal.SendResult) bool {
	for _, rr := range res.Recipients {
		if rr.Temporary {
			return true
		}
	}
	return false
}

// The actions a message asks of its document: the values of OBX-11 (HL7 table 0085) that
// CI-SIS Trans-CDA-R2 uses.
const (
	actNew     = "F" // first transmission: MDM^T02, ORC-1 NW
	actReplace = "C" // replacement: MDM^T10, ORC-1 RO
	actDelete  = "D" // deletion: MDM^T04, ORC-1 CA
)

// requestedAction reads what the message asks: the MDM event, the OBX-11 of each CDA and
// ORC-1 must agree.
func requestedAction(m *hl7v2.Message) (string, *refusal) {
	act := ""
	if code, event := m.Type(); code == "MDM" {
		act = map[string]string{"T02": actNew, "T10": actReplace, "T04": actDelete}[event]
	}
	for _, obx := range cdaOBX(m) {
		switch v := obx.Get(11, 1); {
		case v != actNew && v != actReplace && v != actDelete:
			return "", refuse(hl7v2.CondTableValue, "OBX", 11, "OBX-11 of a document not F, C or D")
		case act == "":
			act = v
		case v != act:
			return "", refuse(hl7v2.CondApplication, "OBX", 11, "OBX-11 disagrees with the event or another document")
		}
	}
	if act == "" {
		act = actNew // no document: documents() refuses the message
	}
	if orc := m.Segment("ORC"); orc != nil {
		want := map[string]string{actNew: "NW", actReplace: "RO", actDelete: "CA"}[act]
		if orc.Get(1, 1) != want {
			return "", refuse(hl7v2.CondApplication, "ORC", 1, "ORC-1 disagrees with the event and OBX-11")
		}
	}
	if act == actDelete {
		return "", refuse(hl7v2.CondApplication, "OBX", 11, "document deletion is not mailed")
	}
	return act, nil
}

// cdaOBX returns the OBX segments that carry a CDA document (OBX-5.3 XML).
func cdaOBX(m *hl7v2.Message) []*hl7v2.Segment {
	var out []*hl7v2.Segment
	for _, obx := range m.All("OBX") {
		if obx.Get(2, 1) == "ED" && obx.Get(3, 3) != "MetaDMPMSS" && strings.EqualFold(obx.Get(5, 3), "XML") {
			out = append(out, obx)
		}
	}
	return out
}

// replacement checks the documents against the action: a replacement's CDA names the version
// it replaces (relatedDocument RPLC), the same one as TXA-13 in an MDM; a first transmission's
// names none; an MDM's TXA-12, when given, is the CDA's id.
func replacement(m *hl7v2.Message, docs []*cda.Document, act string) *refusal {
	for _, d := range docs {
		parent := replacedID(d)
		switch {
		case act == actReplace && parent == nil:
			return refuse(hl7v2.CondRequiredField, "OBX", 5, "replacement CDA without relatedDocument RPLC")
		case act == actNew && parent != nil:
			return refuse(hl7v2.CondApplication, "OBX", 5, "first transmission of a CDA that replaces another")
		}
	}
	if code, _ := m.Type(); code != "MDM" || len(docs) != 1 {
		return nil
	}
	txa := m.Segment("TXA")
	if txa == nil {
		txa = &hl7v2.Segment{Name: "TXA"} // a first transmission may omit it; a replacement needs TXA-13
	}
	if txa.Get(12, 1) != "" && !sameEI(txa, 12, docs[0].ID) {
		return refuse(hl7v2.CondApplication, "TXA", 12, "TXA-12 is not the CDA's id")
	}
	if act == actReplace {
		if txa.Get(13, 1) == "" {
			return refuse(hl7v2.CondRequiredField, "TXA", 13, "replacement without TXA-13")
		}
		if !sameEI(txa, 13, replacedID(docs[0])) {
			return refuse(hl7v2.CondApplication, "TXA", 13, "TXA-13 is not the document the CDA replaces")
		}
	}
	return nil
}

// replacedID is the parentDocument id of the CDA's relatedDocument RPLC, or nil.
func replacedID(d *cda.Document) *cda.II {
	for _, r := range d.RelatedDocuments {
		if r.TypeCode == "RPLC" && len(r.ParentDocument.IDs) > 0 {
			return &r.ParentDocument.IDs[0]
		}
	}
	return nil
}

// sameEI compares the EI of field f with a CDA id as CI-SIS Trans-CDA-R2 fills TXA-12 and
// TXA-13: extension^^root^ISO, or the root alone when the id has no extension.
func sameEI(s *hl7v2.Segment, f int, id *cda.II) bool {
	if id == nil {
		return false
	}
	if id.Extension != "" {
		return s.Get(f, 1) == id.Extension && s.Get(f, 3) == id.Root
	}
	return s.Get(f, 1) == id.Root && s.Get(f, 3) == ""
}

// endOfMessaging reports an NTE whose NTE-4 is FIN among the NTE that follow the
// DESTMSSANTEPAT OBX (CI-SIS Trans-CDA-R2, "Echange MSSanté Patient").
func endOfMessaging(m *hl7v2.Message) bool {
	in := false
	for _, s := range m.Segments {
		switch {
		case s.Name == "OBX":
			in = s.Get(3, 1) == "DESTMSSANTEPAT" && s.Get(3, 3) == "MetaDMPMSS"
		case s.Name == "NTE" && in && s.Get(4, 1) == "FIN":
			return true
		case s.Name != "NTE":
			in = false
		}
	}
	return false
}

// patientINS reads the INS in PID-3: the repetition whose identifier type (CX-5) is INS.
func patientINS(m *hl7v2.Message) (mssante.INS, *refusal) {
	pid := m.Segment("PID")
	if pid == nil {
		return mssante.INS{}, refuse(hl7v2.CondSegmentSequence, "PID", 0, "no PID")
	}
	for r := 0; r < pid.Reps(3); r++ {
		if pid.At(3, r, 5, 1) != "INS" {
			continue
		}
		ins, err := mssante.ParseINS(pid.At(3, r, 1, 1), pid.At(3, r, 4, 2))
		if err != nil {
			rr := refuse(hl7v2.CondDataType, "PID", 3, "invalid INS")
			rr.err.AppCode, rr.err.AppText, rr.err.AppCodeSystem = "905", "INS invalide", "applicationErrorCode"
			return mssante.INS{}, rr
		}
		return ins, nil
	}
	r := refuse(hl7v2.CondRequiredField, "PID", 3, "no INS in PID-3")
	r.err.AppCode, r.err.AppText, r.err.AppCodeSystem = "903", "INS non présent", "applicationErrorCode"
	return mssante.INS{}, r
}

// recipients reads PRT-15.4 of the PRT segments whose PRT-4 is RCT (Result Copies To).
func recipients(m *hl7v2.Message) ([]mssante.Address, *refusal) { return participants(m, "RCT") }

// participants reads PRT-15.4 of the PRT segments whose PRT-4 is role: RCT for the recipients,
// REPLY for the Reply-To of the mail (CI-SIS Trans-CDA-R2, MSSanté mapping).
func participants(m *hl7v2.Message, role string) ([]mssante.Address, *refusal) {
	var to []mssante.Address
	for _, prt := range m.All("PRT") {
		if prt.Get(4, 1) != role {
			continue
		}
		for r := 0; r < max(prt.Reps(15), 1); r++ {
			a, err := mssante.ParseAddress(prt.At(15, r, 4, 1))
			if err != nil {
				return nil, refuse(hl7v2.CondDataType, "PRT", 15, "invalid "+role+" address")
			}
			to = append(to, a)
		}
	}
	if len(to) == 0 {
		return nil, refuse(hl7v2.CondRequiredField, "PRT", 15, "no "+role+" address")
	}
	return to, nil
}

// documents reads the CDA documents of the OBX of type ED whose OBX-5 is XML in base64 (an
// ORU^R01 may carry an N1 and an N3 together), and a PDF copy from an OBX ED whose OBX-5.3 is
// PDF. A structured document travels with that PDF, or else with the PDF of an N1 of the same
// message; without either it is refused.
func documents(m *hl7v2.Message) ([]xdm.MailDocument, []*cda.Document, *refusal) {
	var docs []*cda.Document
	var xmls [][]byte
	var pdf []byte
	for _, obx := range m.All("OBX") {
		if obx.Get(2, 1) != "ED" || obx.Get(3, 3) == "MetaDMPMSS" {
			continue
		}
		sub, enc := strings.ToUpper(obx.Get(5, 3)), strings.ToUpper(obx.Get(5, 4))
		if sub != "XML" && sub != "PDF" {
			continue // the mail body (OBX-5.3 empty) and other observations
		}
		if enc != "BASE64" {
			return nil, nil, refuse(hl7v2.CondDataType, "OBX", 5, "document not in base64")
		}
		data, err := base64.StdEncoding.DecodeString(obx.Get(5, 5))
		if err != nil {
			return nil, nil, refuse(hl7v2.CondDataType, "OBX", 5, "invalid base64")
		}
		if sub == "PDF" {
			if pdf == nil {
				pdf = data
			}
			continue
		}
		d, err := cda.ParseBytes(data, nil)
		if err != nil {
			return nil, nil, refuse(hl7v2.CondDataType, "OBX", 5, "CDA does not parse")
		}
		docs, xmls = append(docs, d), append(xmls, data)
	}
	if len(docs) == 0 {
		return nil, nil, refuse(hl7v2.CondRequiredField, "OBX", 5, "no CDA document")
	}
	if pdf == nil {
		for _, d := range docs {
			if d.IsN1() {
				if mt, data, err := d.Content(); err == nil && mt == cda.MediaTypePDF {
					pdf = data
					break
				}
			}
		}
	}
	out := make([]xdm.MailDocument, len(docs))
	for i, d := range docs {
		out[i].CDA = xmls[i]
		if !d.IsN1() {
			if pdf == nil {
				return nil, nil, refuse(hl7v2.CondRequiredField, "OBX", 5, "structured document without a PDF copy")
			}
			out[i].PDF = pdf
		}
	}
	return out, docs, nil
}

// visibility applies the MetaDMPMSS management rules of CI-SIS Trans-CDA-R2 to the
// recipients, the safe way: a patient address (…@patient.mssante.fr) only when DESTMSSANTEPAT
// is Y and INVISIBLE_PATIENT is not Y; a professional's or structure's address only when
// DESTMSSANTEPS is Y and MASQUE_PS is not Y. An indicator the message does not carry does not
// restrict; one it carries is obeyed, and a message that breaks one is refused whole.
func visibility(m *hl7v2.Message, to []mssante.Address) *refusal {
	for _, a := range to {
		var ok bool
		if a.IsPatient() {
			ok = flag(m, "DESTMSSANTEPAT") != "N" && flag(m, "INVISIBLE_PATIENT") != "Y"
		} else {
			ok = flag(m, "DESTMSSANTEPS") != "N" && flag(m, "MASQUE_PS") != "Y"
		}
		if !ok {
			return refuse(hl7v2.CondApplication, "PRT", 15, "recipient excluded by the MetaDMPMSS indicators")
		}
	}
	return nil
}

// flag reads a MetaDMPMSS indicator OBX (OBX-3.1 = name, OBX-5.1 = Y or N); "" when absent.
func flag(m *hl7v2.Message, name string) string {
	for _, obx := range m.All("OBX") {
		if obx.Get(3, 1) == name && obx.Get(3, 3) == "MetaDMPMSS" {
			return obx.Get(5, 1)
		}
	}
	return ""
}

// yes reads a MetaDMPMSS indicator OBX (OBX-3.1 = name, OBX-5.1 = Y or N).
func yes(m *hl7v2.Message, name string) bool {
	for _, obx := range m.All("OBX") {
		if obx.Get(3, 1) == name {
			return obx.Get(5, 1) == "Y"
		}
	}
	return false
}

// bodyText is the CORPSMAIL_PS OBX (base64 text), or "" for bal's default.
func bodyText(m *hl7v2.Message) string {
	for _, obx := range m.All("OBX") {
		if obx.Get(3, 1) == "CORPSMAIL_PS" {
			if t, err := base64.StdEncoding.DecodeString(obx.Get(5, 5)); err == nil {
				return string(t)
			}
		}
	}
	return ""
}

// writeFileSync writes path durably: a temporary file fsynced, renamed, and the folder fsynced.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeFile replaces path with data atomically (rename), mode 0600.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
