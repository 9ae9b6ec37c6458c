package mailbox

import (
	"strings"
	"unicode/utf8"
)

// System flags (RFC 3501 §2.3.2), in their canonical spelling.
var systemFlags = map[string]string{
	`\seen`: `\Seen`, `\answered`: `\Answered`, `\flagged`: `\Flagged`,
	`\deleted`: `\Deleted`, `\draft`: `\Draft`,
}

// normFlags canonicalises system flags, drops invalid ones (\Recent cannot be stored, nor
// text that is not UTF-8) and
// removes duplicates, comparing case-insensitively.
func normFlags(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range in {
		if f == "" || !utf8.ValidString(f) || strings.ContainsAny(f, " ()[]{}\"%*\r\n\x00") {
			continue
		}
		l := strings.ToLower(f)
		if strings.HasPrefix(f, `\`) {
			c, ok := systemFlags[l]
			if !ok {
				continue
			}
			f = c
		}
		if !seen[l] {
			seen[l] = true
			out = append(out, f)
		}
	}
	return out
}

func splitFlags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

func joinFlags(f []string) string { return strings.Join(f, " ") }

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	switch op {
	case FlagsSet:
		return normFlags(flags)
	case FlagsAdd:
		return normFlags(append(append([]string(nil), cur...), flags...))
	case FlagsRemove:
		var out []string
		for _, c := range cur {
			keep := true
			for _, f := range flags {
				if strings.EqualFold(c, f) {
					keep = false
					break
				}
			}
			if keep {
				out = append(out, c)
			}
		}
		return out
	}
	return cur
}
