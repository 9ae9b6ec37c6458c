package sandbox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/mssante-go/sdk/internal/sandboxinfo"
)

// apiInfo chooses the port of the HTTP API that "mssante dev" serves for the BAL
// applicatives (the previous run's when free), releases it for it, and writes a send request
// carrying the sample lettre de liaison for marie.durand@cabinet, the body of the printed curl
// line.
func apiInfo(info *Info, lns *listeners) (*sandboxinfo.API, error) {
	addr, err := lns.listen("api", "https")
	if err != nil {
		return nil, err
	}
	lns.take("api", "https").Close()
	a := &sandboxinfo.API{BALs: []string{"dpi@" + Hopital, "logiciel@" + Cabinet}, Listen: addr,
		URL:     "https://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:] + "/v1",
		Request: filepath.Join(info.Dir, "exemples", "lettre-de-liaison-api.json")}
	cdaDoc, err := os.ReadFile(info.SampleCDA)
	if err != nil {
		return nil, err
	}
	pdf, err := os.ReadFile(info.SamplePDF)
	if err != nil {
		return nil, err
	}
	type doc struct {
		CDA []byte `json:"cda"`
		PDF []byte `json:"pdf"`
	}
	b, err := json.Marshal(struct {
		To        []string `json:"to"`
		Documents []doc    `json:"documents"`
	}{[]string{"marie.durand@" + Cabinet}, []doc{{cdaDoc, pdf}}})
	if err != nil {
		return nil, err
	}
	return a, writeAtomic(a.Request, b)
}
