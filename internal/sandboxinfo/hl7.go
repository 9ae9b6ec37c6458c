package sandboxinfo

// HL7 is the HL7v2 bridge that "mssante dev" runs for the hospital's BAL applicative: a test
// DPI sends its MDM^T02 or ORU^R01 over MLLP to Listen, and listens on DPI for the ZAM^Z02 and
// ZAM^Z03 acknowledgements the bridge sends back.
type HL7 struct {
	BAL    string `json:"bal"`
	Listen string `json:"listen"`
	DPI    string `json:"dpi"`
}
