package imapd

import "testing"

// TestMessageContainsUndecodable: a part whose charset or transfer encoding go-message does
// not know is searched as it is, and does not end the search of the parts after it.
func TestMessageContainsUndecodable(t *testing.T) {
	const multipart = "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nBonjour\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-no-such-encoding\r\n\r\nCompte rendu\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nneedle00042\r\n--b--\r\n"
	tests := []struct {
		name, msg, needle string
		want              bool
	}{
		{"part after an unknown charset", multipart, "needle00042", true},
		{"part with an unknown charset", multipart, "bonjour", true},
		{"part with an unknown encoding", multipart, "compte rendu", true},
		{"absent", multipart, "absent00042", false},
		{"body with an unknown charset", "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nneedle00042\r\n", "needle00042", true},
		{"body with an unknown encoding", "Content-Transfer-Encoding: x-no-such-encoding\r\n\r\nneedle00042\r\n", "needle00042", true},
		{"header that does not parse", "not a header field\r\n\r\nneedle00042\r\n", "needle00042", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageContains([]byte(tt.msg), tt.needle, false); got != tt.want {
				t.Fatalf("messageContains(%q) = %v, want %v", tt.needle, got, tt.want)
			}
		})
	}
}
