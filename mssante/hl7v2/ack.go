package hl7v2

import (
	"fmt"
	"strconv"
	"time"
)

// Acknowledgment codes of MSA-1 (HL7 table 0008, original mode), as CI-SIS Trans-CDA-R2 reads
// them: AA accepted and taken in charge, AE an error in the message, AR refused for a reason
// that may pass (the sender may try again later).
const (
	AckAccept = "AA"
	AckError  = "AE"
	AckReject = "AR"
)

// Error conditions of HL7 table 0357 (messageErrorCondition) that CI-SIS Trans-CDA-R2 lists.
const (
	CondSegmentSequence    = 100
	CondRequiredField      = 101
	CondDataType           = 102
	CondTableValue         = 103
	CondCardinality        = 198
	CondOtherHL7           = 199
	CondUnsupportedType    = 200
	CondUnsupportedEvent   = 201
	CondUnsupportedProcess = 202
	CondUnsupportedVersion = 203
	CondApplication        = 207
)

var condText = map[int]string{
	0:   "Message accepted",
	100: "Segment sequence error",
	101: "Required field missing",
	102: "Data type error",
	103: "Table value not found",
	198: "Non-conformant cardinality",
	199: "Other HL7 Error",
	200: "Unsupported message type",
	201: "Unsupported event code",
	202: "Unsupported processing",
	203: "Unsupported version",
	207: "Application error",
}

// ErrorDetail is one ERR segment: ERR-2 the location (segment, sequence, field), ERR-3 the
// table 0357 condition, ERR-4 the severity (E by default) and ERR-5 an application code with
// its text and coding system (for MSSanté: SMTPERRORCODE, or the 90x integration codes).
type ErrorDetail struct {
	Segment       string
	Sequence      int
	Field         int
	Condition     int
	Severity      string
	AppCode       string
	AppText       string
	AppCodeSystem string
}

// AckOptions describe the acknowledgment [Ack] builds.
type AckOptions struct {
	Code      string // AckAccept, AckError or AckReject
	ControlID string // MSH-10 of the ACK itself
	Time      time.Time
	Errors    []ErrorDetail
}

// Ack builds the ACK of req: sender and receiver swapped, MSH-9 ACK^<event>^ACK, the version,
// processing id and character set of req, MSA-2 = req's MSH-10, one ERR per error.
func Ack(req *Message, o AckOptions) (*Message, error) {
	switch o.Code {
	case AckAccept, AckError, AckReject:
	default:
		return nil, fmt.Errorf("%w: acknowledgment code %q", ErrInvalid, o.Code)
	}
	if o.ControlID == "" {
		return nil, fmt.Errorf("%w: ACK without a control id", ErrInvalid)
	}
	d := Standard()
	if req != nil && req.Delims.valid() {
		d = req.Delims
	}
	m := New(d)
	msh := m.Segments[0]
	_, event := "", ""
	if req != nil {
		if rm := req.Segment("MSH"); rm != nil {
			msh.SetValue(3, 0, rm.Value(5, 0)).SetValue(4, 0, rm.Value(6, 0))
			msh.SetValue(5, 0, rm.Value(3, 0)).SetValue(6, 0, rm.Value(4, 0))
			msh.SetValue(11, 0, rm.Value(11, 0)).SetValue(12, 0, rm.Value(12, 0))
			msh.SetValue(17, 0, rm.Value(17, 0)).SetValue(18, 0, rm.Value(18, 0))
		}
		_, event = req.Type()
	}
	msh.Set(7, o.Time.Format("20060102150405"))
	msh.Set(9, "ACK", event, "ACK")
	msh.Set(10, o.ControlID)
	if msh.Get(11, 1) == "" {
		msh.Set(11, "P")
	}
	ctl := ""
	if req != nil {
		ctl = req.ControlID()
	}
	m.Add("MSA").Set(1, o.Code).Set(2, ctl)
	for _, e := range o.Errors {
		s := m.Add("ERR")
		if e.Segment != "" {
			s.Set(2, e.Segment, itoa(e.Sequence), itoa(e.Field))
		}
		s.Set(3, strconv.Itoa(e.Condition), condText[e.Condition], "messageErrorCondition")
		sev := e.Severity
		if sev == "" {
			sev = "E"
		}
		s.Set(4, sev)
		if e.AppCode != "" {
			s.Set(5, e.AppCode, e.AppText, e.AppCodeSystem)
		}
	}
	return m, nil
}

func itoa(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// AckOf reads an acknowledgment: MSA-1 and MSA-2. ok is false when m has no MSA.
func AckOf(m *Message) (code, controlID string, ok bool) {
	s := m.Segment("MSA")
	if s == nil {
		return "", "", false
	}
	return s.Get(1, 1), s.Get(2, 1), true
}
