package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

const balMemberUsage = `member add|remove ADDRESS NATIONAL_ID | member list ADDRESS [--json]

The members of an ORG BAL open it with their own Pro Santé Connect token (the SASL
authorization identity names the ORG BAL); the audit log records which person acted.
NATIONAL_ID is the practitioner's national id: 8 + RPPS, or 0 + ADELI.`

// balMember runs "bal member add|remove|list".
func balMember(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bal member", balMemberUsage)
	dir := storeFlag(fs)
	asJSON := fs.Bool("json", false, "list: JSON output")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagErr(err)
	}
	want := map[string]int{"add": 3, "remove": 3, "list": 2}
	if len(pos) == 0 || want[pos[0]] != len(pos) {
		fs.Usage()
		return exitCode(2, nil)
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	addr := strings.ToLower(pos[1])
	switch pos[0] {
	case "add":
		if err := st.AddMember(ctx, addr, pos[2]); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		fmt.Fprintf(e.stdout, "%s is a member of %s\n", pos[2], addr)
	case "remove":
		if err := st.RemoveMember(ctx, addr, pos[2]); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		fmt.Fprintf(e.stdout, "%s is no longer a member of %s\n", pos[2], addr)
	case "list":
		ms, err := st.Members(ctx, addr)
		if err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		if *asJSON {
			type member struct {
				NationalID string `json:"nationalId"`
				Added      string `json:"added"`
			}
			out := []member{}
			for _, m := range ms {
				out = append(out, member{m.NationalID, m.Added.Format("2006-01-02T15:04:05Z")})
			}
			return json.NewEncoder(e.stdout).Encode(out)
		}
		for _, m := range ms {
			fmt.Fprintf(e.stdout, "%s\t%s\n", m.NationalID, m.Added.Format("2006-01-02"))
		}
	}
	return nil
}
