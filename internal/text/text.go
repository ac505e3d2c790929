// Package text holds the one way Backstop bounds the texts it writes into
// status, Events and commits.
package text

import "unicode/utf8"

// Truncate cuts s to at most n bytes (n >= 3) on a character boundary,
// ending in "…" when it was cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
