package sandbox

import "github.com/mssante-go/sdk/internal/sandboxinfo"

// hl7Ports chooses the MLLP ports of the HL7v2 bridge that "mssante dev" runs for the
// hospital's BAL applicative (the previous run's when free) and releases them for it.
func hl7Ports(lns *listeners) (*sandboxinfo.HL7, error) {
	h := &sandboxinfo.HL7{BAL: "dpi@" + Hopital}
	for name, dst := range map[string]*string{"listen": &h.Listen, "dpi": &h.DPI} {
		addr, err := lns.listen("hl7", name)
		if err != nil {
			return nil, err
		}
		lns.take("hl7", name).Close()
		*dst = addr
	}
	return h, nil
}
