package creds

import (
	"fmt"
	"strings"
)

// Redacted is what a Secret prints as.
const Redacted = "[redacted]"

// Secret is a token that never prints itself.
type Secret struct{ v string }

// NewSecret wraps a token.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the token; call it only where the value goes on the wire.
func (s Secret) Reveal() string { return s.v }

// Empty reports whether there is no token.
func (s Secret) Empty() bool { return s.v == "" }

func (s Secret) String() string               { return Redacted }
func (s Secret) GoString() string             { return Redacted }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(Redacted)) }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Redact replaces every occurrence of the token in s.
func (s Secret) Redact(text string) string {
	if len(s.v) < 4 { // a token this short would redact ordinary words
		return text
	}
	return strings.ReplaceAll(text, s.v, Redacted)
}
