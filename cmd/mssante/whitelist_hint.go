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

// signerHint adds to the refusal of a list signed by another signer than the expected one the
// flag that trusts it, when the list is a sandbox's: its test signer has the ANS signer's
// subject but not its key, so only --pin with the test signer's certificate verifies it.
func signerHint(list string, tf *trustFlags, err error) error {
	if tf.pin != "" || tf.roots != "" || !(errors.Is(err, whitelist.ErrSignerMismatch) || errors.Is(err, whitelist.ErrSignerUntrusted)) {
		return err
	}
	signer := filepath.Join(filepath.Dir(list), sandboxSignerFile)
	if _, serr := os.Stat(signer); serr != nil {
		return err
	}
	return fmt.Errorf("%w: this list is signed by the test signer of \"mssante dev\": add --pin %s", err, signer)
}
