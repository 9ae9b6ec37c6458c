package sandboxinfo

// API is the HTTP API that "mssante dev" serves for the sandbox's BAL applicatives, over HTTPS
// with mutual TLS: a caller presents the certificate of one of BALs (CertFile and KeyFile of
// that BAL) and trusts CAFile; the server answers as localhost with the certificate of the
// hospital's operator.
type API struct {
	BALs   []string `json:"bals"`
	Listen string   `json:"listen"`
	// URL is the API's base, "https://localhost:PORT/v1".
	URL string `json:"url"`
	// Request is a sample send request (JSON) carrying the sample lettre de liaison.
	Request string `json:"request"`
}
