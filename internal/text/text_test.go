package text_test

import (
	"testing"
	"unicode/utf8"

	"backstop.dev/backstop/internal/text"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"short enough", "value 0.2", 9, "value 0.2"},
		{"cut", "value 0.25 above", 10, "value 0…"},
		{"never splits a character", "ééééé", 8, "éé…"},
		{"a cut at the start", "éé", 3, "…"},
	}
	for _, tc := range tests {
		got := text.Truncate(tc.s, tc.n)
		if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("%s: Truncate(%q, %d) = %q (%d bytes); want %q", tc.name, tc.s, tc.n, got, len(got), tc.want)
		}
	}
}
