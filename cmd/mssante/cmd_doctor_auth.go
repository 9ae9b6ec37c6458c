package main

import "github.com/mssante-go/sdk/transport/node"

// serveConfigWarnings are the doctor checks of the authentication settings of an "mssante
// serve" configuration (node.Config.Warnings): passwords for PER and ORG BALs, and whether
// Pro Santé Connect is set.
func serveConfigWarnings(file string) ([]doctorCheck, error) {
	c, err := node.LoadConfigFile(file)
	if err != nil {
		return nil, err
	}
	var out []doctorCheck
	for _, w := range c.Warnings() {
		out = append(out, doctorCheck{doctorWarn, "passwords", w,
			"set [psc] issuer and client_ids, have the practitioners log in with Pro Santé Connect, then set auth.allow_passwords = false"})
	}
	if len(out) == 0 {
		out = append(out, doctorCheck{doctorOK, "passwords", "off for PER and ORG BALs", ""})
	}
	return out, nil
}
