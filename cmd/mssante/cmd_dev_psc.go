package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// printDevPSC prints the sandbox's Pro Santé Connect stand-in, its practitioners, and a shell
// command that gets a token and reads a PER BAL with curl --oauth2-bearer.
func printDevPSC(w io.Writer, info *sandbox.Info) {
	if info.PSC == nil || len(info.PSC.Practitioners) == 0 {
		return
	}
	fmt.Fprintf(w, "\nPro Santé Connect (sandbox OpenID provider) %s\n", info.PSC.Issuer)
	for _, p := range info.PSC.Practitioners {
		fmt.Fprintf(w, "  practitioner %s (national id %s)  secret %s\n      holds %s\n", p.ClientID, p.NationalID, p.Secret,
			strings.Join(p.BALs, ", "))
	}
	fmt.Fprintf(w, "\nRead a PER BAL with a Pro Santé Connect token (XOAUTH2):\n  %s\n", devPSCCommand(info, 0, 0))
}

// devPSCCommand is the shell command that gets a token for practitioner i (client_credentials)
// and lists BAL b of theirs over IMAPS with curl --oauth2-bearer.
func devPSCCommand(info *sandbox.Info, i, b int) string {
	p := info.PSC.Practitioners[i]
	bal := p.BALs[b]
	op := info.OperatorOf(bal)
	port := op.IMAPS[strings.LastIndexByte(op.IMAPS, ':')+1:]
	return fmt.Sprintf(`TOKEN=$(curl -sS --cacert %s -u %s:%s -d grant_type=client_credentials %s | sed -E 's/.*"access_token":"([^"]+)".*/\1/') && `+
		`curl -sS --cacert %s --login-options AUTH=XOAUTH2 -u %s: --oauth2-bearer "$TOKEN" 'imaps://localhost:%s/INBOX?ALL'`,
		info.CAFile, p.ClientID, p.Secret, info.PSC.TokenURL, info.CAFile, bal, port)
}
