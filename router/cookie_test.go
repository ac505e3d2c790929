package router

import (
	"regexp"
	"strings"
	"testing"

	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func TestCookieRegex(t *testing.T) {
	abc := []backstopv1.CookieMatch{{Name: "a", Value: "1"}, {Name: "b.x", Value: "(2)"}, {Name: "c", Value: "a|b"}}
	re := regexp.MustCompile(mustCookieRegex(t, abc))
	tests := []struct {
		header string
		want   bool
	}{
		{"a=1; b.x=(2); c=a|b", true},
		{"c=a|b;a=1;  b.x=(2)", true},
		{"z=0; b.x=(2); y=9; a=1; c=a|b; w=", true},
		{"a=1; b.x=(2)", false},          // c missing
		{"a=1; bax=(2); c=a|b", false},   // '.' is quoted
		{"a=1; b.x=2; c=a|b", false},     // parentheses are quoted
		{"a=1; b.x=(2); c=a", false},     // '|' is quoted
		{"a=1; b.x=(2); c=a|bb", false},  // value boundary
		{"a=1; b.x=(2); xc=a|b", false},  // name boundary
		{"q=a=1; b.x=(2); c=a|b", false}, // inside another cookie
	}
	for _, tc := range tests {
		if got := re.MatchString(tc.header); got != tc.want {
			t.Errorf("%q matches %q: %v; want %v", re, tc.header, got, tc.want)
		}
	}
}

func mustCookieRegex(t *testing.T, c []backstopv1.CookieMatch) string {
	t.Helper()
	re, err := cookieRegex(c)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

func TestCookieRegexLimits(t *testing.T) {
	long := strings.Repeat("v", 1024)
	tests := []struct {
		name    string
		cookies []backstopv1.CookieMatch
		want    string
	}{
		{"too many cookies", []backstopv1.CookieMatch{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}}, "at most 4"},
		{"too long", []backstopv1.CookieMatch{{Name: "a", Value: long}, {Name: "b", Value: long}, {Name: "c", Value: long}}, "Gateway API allows 4096"},
	}
	for _, tc := range tests {
		if _, err := cookieRegex(tc.cookies); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestHTTPMatchConflicts(t *testing.T) {
	_, err := httpMatches(nil, &backstopv1.TrafficMatch{
		Headers: []gwapiv1.HTTPHeaderMatch{{Name: "cookie", Value: "x"}},
		Cookies: []backstopv1.CookieMatch{{Name: "a", Value: "1"}},
	})
	if err == nil || !strings.Contains(err.Error(), "Cookie header and cookies") {
		t.Errorf("a Cookie header with cookies: error %v; want a conflict", err)
	}
	_, err = httpMatches([]gwapiv1.HTTPRouteMatch{{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "no"}}}},
		&backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "x-canary", Value: "yes"}}})
	if err == nil || !strings.Contains(err.Error(), "match 0 of the route template") {
		t.Errorf("a header in both the template and the match: error %v; want a conflict", err)
	}
}
