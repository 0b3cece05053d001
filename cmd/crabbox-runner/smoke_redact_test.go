package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The redactor learns secrets as the run makes them, whole and, for a PEM
// key, line by line; longer secrets win over the shorter ones they hold.
func TestSmokeRedactor(t *testing.T) {
	r := &redactor{}
	var buf bytes.Buffer
	w := r.writer(&buf)
	fmt.Fprintln(w, "before: key-0123456789")
	r.add("key-0123456789", "short", "")
	pem := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\nbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"
	r.add(pem, "key-0123456789-and-more")
	fmt.Fprintln(w, "after: key-0123456789 key-0123456789-and-more short")
	fmt.Fprintf(w, "a host printed: %s and one line: bm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n", pem)
	out := buf.String()
	for _, secret := range []string{"key-0123456789 ", "and-more", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE", "bm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"} {
		if strings.Contains(strings.SplitN(out, "\n", 2)[1], secret) {
			t.Errorf("%q printed after it was learnt:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "before: key-0123456789") || !strings.Contains(out, "short") {
		t.Errorf("redacted what it did not know yet, or a short word:\n%s", out)
	}
}
