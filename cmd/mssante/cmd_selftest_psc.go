package main

import (
	"context"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/sandboxinfo"
)

// selftestPSC gets a token for p from the sandbox's provider and opens every BAL p holds (their
// PER BAL, the ORG BALs they are a member of) over IMAPS and submission.
func selftestPSC(ctx context.Context, info *sandbox.Info, p *sandboxinfo.Practitioner) error {
	tok, err := info.PSCToken(ctx, p.ClientID)
	if err != nil {
		return err
	}
	for _, b := range p.BALs {
		if err := info.PSCLogin(ctx, b, tok); err != nil {
			return err
		}
	}
	return nil
}
