package router

import (
	"fmt"
	"regexp"
	"strings"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

const cookieHeader = "Cookie"

// maxCookies is how many cookies one match may require. Gateway API
// considers only the first match of a header name, so every cookie goes into
// one regular expression on the Cookie header; without lookahead (RE2, the
// dialect of Envoy and Go-based gateways) "all of these cookies, in any
// order" is an alternation over their orders, which grows as n!.
const maxCookies = 4

// maxHeaderValue is the Gateway API limit of a header match's value.
const maxHeaderValue = 4096

// cookieRegex returns an RE2 regular expression that matches a Cookie header
// holding every given cookie with exactly its value, in any order, among
// other cookies. Names and values are quoted; each cookie is anchored on the
// cookie boundaries (the start of the header or a ';', then optional spaces;
// a ';' or the end after), so "a=1" matches neither "xa=1" nor "a=12".
// Cookie names and values cannot hold ';' (the API forbids it), so the
// boundaries cannot fall inside a value.
func cookieRegex(cookies []backstopv1.CookieMatch) (string, error) {
	if len(cookies) > maxCookies {
		return "", fmt.Errorf("the traffic match requires %d cookies; at most %d fit in one regular expression on the %s header",
			len(cookies), maxCookies, cookieHeader)
	}
	terms := make([]string, len(cookies))
	for i, c := range cookies {
		terms[i] = regexp.QuoteMeta(c.Name) + "=" + regexp.QuoteMeta(c.Value)
	}
	var alts []string
	permute(terms, 0, func(order []string) {
		// (?:.*;)? skips earlier cookies, \s*;(?:.*;)?\s* the ones between,
		// (?:;.*)? the later ones.
		alts = append(alts, `(?:.*;)?\s*`+strings.Join(order, `\s*;(?:.*;)?\s*`)+`\s*(?:;.*)?`)
	})
	re := "^(?:" + strings.Join(alts, "|") + ")$"
	if len(alts) == 1 {
		re = "^" + alts[0] + "$"
	}
	if len(re) > maxHeaderValue {
		return "", fmt.Errorf("the traffic match's cookies make a regular expression of %d characters on the %s header; Gateway API allows %d",
			len(re), cookieHeader, maxHeaderValue)
	}
	if _, err := regexp.Compile(re); err != nil {
		return "", fmt.Errorf("the traffic match's cookies make an invalid regular expression: %w", err)
	}
	return re, nil
}

// permute calls fn with every order of s (Heap's algorithm would do too; n
// is at most maxCookies).
func permute(s []string, k int, fn func([]string)) {
	if k == len(s) {
		fn(s)
		return
	}
	for i := k; i < len(s); i++ {
		s[k], s[i] = s[i], s[k]
		permute(s, k+1, fn)
		s[k], s[i] = s[i], s[k]
	}
}
