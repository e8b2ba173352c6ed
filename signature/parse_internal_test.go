package signature

import (
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzParseSignature checks the header parser: it never panics, and it
// accepts exactly the 64-hex-digit values, with or without "sha256=".
func FuzzParseSignature(f *testing.F) {
	valid := strings.Repeat("ab", 32)
	for _, s := range []string{"", valid, "sha256=" + valid, "SHA256=" + strings.ToUpper(valid), "sha256=", "sha256=zz", " " + valid, "v1," + valid} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		sig, err := parseSignature(header)
		if err != nil {
			return
		}
		v := strings.TrimSpace(header)
		if len(v) > 7 && strings.EqualFold(v[:7], "sha256=") {
			v = v[7:]
		}
		want, derr := hex.DecodeString(v)
		if derr != nil || len(want) != 32 || string(want) != string(sig[:]) {
			t.Fatalf("parseSignature(%q) accepted %x, want rejection or %x", header, sig, want)
		}
	})
}
