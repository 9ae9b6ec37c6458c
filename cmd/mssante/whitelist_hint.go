package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mssante-go/sdk/whitelist"
)

// sandboxSignerFile is where "mssante dev" keeps the certificate of the test signer of its
// liste blanche, beside the list.
const sandboxSignerFile = "alb-signer.crt.pem"

// signerHint adds to the refusal of a list the flag that verifies it: --list-date for a list
// signed by a certificate that has expired since (the ANS lists of 2023-2026 after 2026-08-23),
// and for a list signed by another signer than the expected one, when the list is a sandbox's,
// --pin with the test signer's certificate: it has the ANS signer's subject but not its key.
func signerHint(list string, tf *trustFlags, err error) error {
	if errors.Is(err, whitelist.ErrSignerExpired) && !tf.listDate {
		return fmt.Errorf("%w: add --list-date to verify it at the date the list was signed", err)
	}
	if tf.pin != "" || tf.roots != "" || !(errors.Is(err, whitelist.ErrSignerMismatch) || errors.Is(err, whitelist.ErrSignerUntrusted)) {
		return err
	}
	signer := filepath.Join(filepath.Dir(list), sandboxSignerFile)
	if _, serr := os.Stat(signer); serr != nil {
		return err
	}
	return fmt.Errorf("%w: this list is signed by the test signer of \"mssante dev\": add --pin %s", err, signer)
}
