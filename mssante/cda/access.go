package cda

import (
	"fmt"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// INS returns the patient's INS: the first patient id whose root is one of the INS OIDs.
func (d *Document) INS() (mssante.INS, bool) {
	if len(d.RecordTargets) == 0 {
		return mssante.INS{}, false
	}
	for _, id := range d.RecordTargets[0].PatientRole.IDs {
		if isINSOID(id.Root) && id.Extension != "" {
			return mssante.INS{Value: id.Extension, OID: id.Root}, true
		}
	}
	return mssante.INS{}, false
}

// LocalPatientID returns the first patient id that is not an INS (the IPP), if any.
func (d *Document) LocalPatientID() (II, bool) {
	if len(d.RecordTargets) == 0 {
		return II{}, false
	}
	for _, id := range d.RecordTargets[0].PatientRole.IDs {
		if !isINSOID(id.Root) && id.Root != "" && id.Extension != "" && id.NullFlavor == "" {
			return id, true
		}
	}
	return II{}, false
}

// Patient returns the patient identity the header carries: the INS and its traits.
func (d *Document) Patient() mssante.Patient {
	var p mssante.Patient
	p.INS, _ = d.INS()
	if len(d.RecordTargets) == 0 || d.RecordTargets[0].PatientRole.Patient == nil {
		return p
	}
	psn := d.RecordTargets[0].PatientRole.Patient
	if len(psn.Names) > 0 {
		n := &psn.Names[0]
		p.BirthName = n.Part("family", "BR")
		p.FirstGivenName = n.Part("given", "BR")
		if g := n.Part("given", ""); g != "" {
			p.GivenNames = strings.Fields(g)
		}
		p.UsedName = n.Part("family", "CL")
		p.UsedGivenName = n.Part("given", "CL")
	}
	if psn.AdministrativeGender != nil {
		p.Sex = mssante.Sex(psn.AdministrativeGender.Code)
	}
	if psn.BirthTime != nil {
		if t, err := ParseTS(psn.BirthTime.Value); err == nil {
			p.BirthDate = t
		}
	}
	if psn.Birthplace != nil && psn.Birthplace.Place.Addr != nil {
		p.BirthPlace = psn.Birthplace.Place.Addr.County
	}
	return p
}

// ParseTS parses an HL7 TS (YYYY[MM[DD[hh[mm[ss[.f]]]]]][±ZZZZ]). Without an offset the time is
// read as UTC. (French documents carry an offset; the CI-SIS does not say what a missing one
// means.)
func ParseTS(s string) (time.Time, error) {
	if !tsRE.MatchString(s) {
		return time.Time{}, fmt.Errorf("cda: %q is not an HL7 TS", s)
	}
	digits, zone := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		digits, zone = s[:i], s[i:]
	}
	if i := strings.IndexByte(digits, '.'); i >= 0 {
		digits = digits[:i]
	}
	layouts := map[int]string{4: "2006", 6: "200601", 8: "20060102", 10: "2006010215", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(digits)]
	if !ok {
		return time.Time{}, fmt.Errorf("cda: %q has an odd number of digits", s)
	}
	if zone != "" {
		return time.Parse(layout+"-0700", digits+zone)
	}
	return time.Parse(layout, digits)
}

// AuthorPerson returns the first author's national id, family and given names.
func (a *AssignedAuthor) personName() (family, given string) {
	if a.AssignedPerson == nil || len(a.AssignedPerson.Names) == 0 {
		return "", ""
	}
	n := &a.AssignedPerson.Names[0]
	return n.Part("family", ""), n.Part("given", "")
}

// Name returns the family and first given name of the author.
func (a *AssignedAuthor) Name() (family, given string) { return a.personName() }

// Name returns the family and first given name of the entity.
func (a *AssignedEntity) Name() (family, given string) {
	if a.AssignedPerson == nil || len(a.AssignedPerson.Names) == 0 {
		return "", ""
	}
	n := &a.AssignedPerson.Names[0]
	return n.Part("family", ""), n.Part("given", "")
}

// MailDocument is how d is announced in an MSSanté mail (mssante.Document): its code and
// display name, the date of the act (the start of the serviceEvent, else the document's
// date), the patient's INS, and pdf, its PDF copy.
func (d *Document) MailDocument(pdf []byte) mssante.Document {
	date, _ := ParseTS(d.EffectiveTime.Value)
	if len(d.DocumentationOf) > 0 {
		if iv := d.DocumentationOf[0].ServiceEvent.EffectiveTime; iv != nil && iv.Low != nil {
			if t, err := ParseTS(iv.Low.Value); err == nil {
				date = t
			}
		}
	}
	ins, _ := d.INS()
	out := mssante.Document{Date: date, INS: ins, PDF: pdf}
	if d.Code != nil {
		out.Code, out.DisplayName = d.Code.Code, d.Code.DisplayName
	}
	return out
}
