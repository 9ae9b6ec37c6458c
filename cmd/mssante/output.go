package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
)

// cliNIL is the X-MSS-NIL of the mails this program sends on its own: MSSanté asks every mail
// to name the software that sent it, and for "mssante send" that software is this program.
const cliNIL = "MSSANTE-GO-CLI"

// usageError is a usage mistake said in one line, with where to read the options: the whole
// usage printed instead hides what was wrong.
func usageError(fs *flag.FlagSet, format string, a ...any) error {
	return exitCode(2, fmt.Errorf(format+" (see \"%s --help\")", append(a, fs.Name())...))
}

// jsonLine writes v as one line of JSON, the format of every --json output: one object a
// line, so that a script reads the lines one by one (jq, a loop) while the command still runs.
func jsonLine(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs are written: a failure is a bug
		panic(err)
	}
	w.Write(append(b, '\n'))
}
