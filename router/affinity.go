package router

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Affinity keeps a user whom the weights sent to the canary on the canary,
// through a cookie that the canary's responses set and that a rule of the
// route matches (strategy.canary.sessionAffinity).
type Affinity struct {
	// CookieName is the name of the cookie, an RFC 6265 token.
	CookieName string
	// Value is the cookie's value: the release id (see ReleaseID), so that
	// a cookie from another release matches nothing.
	Value string
	// MaxAge is how long a browser keeps the cookie; it is written in
	// whole seconds and must be at least one.
	MaxAge time.Duration
}

// ReleaseIDLength is the length of a release id, in hexadecimal digits.
const ReleaseIDLength = 12

// ReleaseID is the value of the affinity cookie during one release of a
// Rollout: the first ReleaseIDLength hexadecimal digits of a SHA-256 over
// the Rollout's UID, the canary's revision and the release's start time (in
// whole seconds; the zero time when unknown). It differs from one release
// to the next, a retry of the same revision included, and between
// Rollouts, and tells nothing about them: neither the revision nor the UID
// can be read back from it.
func ReleaseID(rollout types.UID, canaryRevision string, start time.Time) string {
	var secs int64
	if !start.IsZero() {
		secs = start.Unix()
	}
	sum := sha256.Sum256([]byte("backstop.dev/session-affinity\x00" + string(rollout) + "\x00" + canaryRevision + "\x00" + strconv.FormatInt(secs, 10)))
	return hex.EncodeToString(sum[:])[:ReleaseIDLength]
}

// cookieToken is an RFC 6265 cookie name (an RFC 7230 token), as the API
// allows it.
var cookieToken = regexp.MustCompile(`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`)

// cookieOctets is an RFC 6265 cookie value without quotes.
var cookieOctets = regexp.MustCompile(`^[!#$%&'()*+\-./0-9:<=>?@A-Z\[\]^_a-z{|}~]+$`)

const setCookieHeader = "Set-Cookie"

// check says what is wrong with an Affinity, if anything.
func (a *Affinity) check() error {
	switch {
	case a == nil:
		return nil
	case len(a.CookieName) > 128 || !cookieToken.MatchString(a.CookieName):
		return fmt.Errorf("router: session affinity cookie name %q is not a cookie name (an RFC 6265 token of 1 to 128 characters)", a.CookieName)
	case len(a.Value) > 1024 || !cookieOctets.MatchString(a.Value):
		return fmt.Errorf("router: session affinity cookie value %q is not a cookie value (1 to 1024 RFC 6265 cookie octets)", a.Value)
	case a.MaxAge < time.Second:
		return fmt.Errorf("router: session affinity max age %s is under one second; Max-Age=0 would delete the cookie", a.MaxAge)
	}
	return nil
}

// affinity is the Split's Affinity when the routes carry it: only while the
// canary has weight.
func (s Split) affinity() *Affinity {
	if s.CanaryWeight <= 0 {
		return nil
	}
	return s.Affinity
}

// setCookie is the Set-Cookie header value that the canary's responses
// carry.
func (a *Affinity) setCookie() string {
	return fmt.Sprintf("%s=%s; Max-Age=%d; Path=/; HttpOnly; SameSite=Lax", a.CookieName, a.Value, int64(a.MaxAge/time.Second))
}

// stampFilters are the filters of the canary's backendRef in the weighted
// rule: one ResponseHeaderModifier that adds the cookie.
func (a *Affinity) stampFilters() []gwapiv1.HTTPRouteFilter {
	return []gwapiv1.HTTPRouteFilter{{
		Type: gwapiv1.HTTPRouteFilterResponseHeaderModifier,
		ResponseHeaderModifier: &gwapiv1.HTTPHeaderFilter{
			Add: []gwapiv1.HTTPHeader{{Name: setCookieHeader, Value: a.setCookie()}},
		},
	}}
}

// stickyMatches are the matches of the sticky rule: each template match
// (or, without any, a match of every request) that also requires the
// cookie in the Cookie header. A template match of the Cookie header is an
// error: a match considers one match per header name.
func (a *Affinity) stickyMatches(template []gwapiv1.HTTPRouteMatch) ([]gwapiv1.HTTPRouteMatch, error) {
	for i, m := range template {
		for _, h := range m.Headers {
			if strings.EqualFold(string(h.Name), cookieHeader) {
				return nil, fmt.Errorf("session affinity matches the %s header, which match %d of the route template matches too; a route match considers one match per header name",
					cookieHeader, i)
			}
		}
	}
	return httpMatches(template, &backstopv1.TrafficMatch{Cookies: []backstopv1.CookieMatch{{Name: a.CookieName, Value: a.Value}}})
}
