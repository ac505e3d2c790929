package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestAdmitsRoutes specifies which listeners of a Gateway admit a
// generated route, as Gateway API's allowedRoutes says: namespaces.from
// Same (the default) only from the Gateway's namespace, All from every
// one, Selector left to the gateway; kinds, when set, must name the
// route's kind; and only the listeners the parentRef's sectionName and
// port select count.
func TestAdmitsRoutes(t *testing.T) {
	listener := func(name string, port gwapiv1.PortNumber, from *gwapiv1.FromNamespaces, kinds ...gwapiv1.Kind) gwapiv1.Listener {
		l := gwapiv1.Listener{Name: gwapiv1.SectionName(name), Port: port, Protocol: gwapiv1.HTTPProtocolType}
		if from != nil || len(kinds) > 0 {
			l.AllowedRoutes = &gwapiv1.AllowedRoutes{}
			if from != nil {
				l.AllowedRoutes.Namespaces = &gwapiv1.RouteNamespaces{From: from}
			}
			for _, k := range kinds {
				l.AllowedRoutes.Kinds = append(l.AllowedRoutes.Kinds, gwapiv1.RouteGroupKind{Kind: k})
			}
		}
		return l
	}
	same, all, selector := ptr.To(gwapiv1.NamespacesFromSame), ptr.To(gwapiv1.NamespacesFromAll), ptr.To(gwapiv1.NamespacesFromSelector)
	tests := []struct {
		name      string
		gwNS      string
		listeners []gwapiv1.Listener
		ref       gwapiv1.ParentReference
		kind      string
		want      bool
		why       string
	}{
		{name: "default from is Same, same namespace", gwNS: "app", listeners: []gwapiv1.Listener{listener("http", 80, nil)}, want: true},
		{name: "default from is Same, other namespace", gwNS: "infra", listeners: []gwapiv1.Listener{listener("http", 80, nil)},
			why: "listener http admits namespaces from Same"},
		{name: "All from another namespace", gwNS: "infra", listeners: []gwapiv1.Listener{listener("http", 80, all)}, want: true},
		{name: "Selector is left to the gateway", gwNS: "infra", listeners: []gwapiv1.Listener{listener("http", 80, selector)}, want: true},
		{name: "one listener of two admits", gwNS: "infra", listeners: []gwapiv1.Listener{listener("a", 80, same), listener("b", 443, all)}, want: true},
		{name: "sectionName picks the listener that does not admit", gwNS: "infra",
			listeners: []gwapiv1.Listener{listener("a", 80, same), listener("b", 443, all)},
			ref:       gwapiv1.ParentReference{SectionName: ptr.To(gwapiv1.SectionName("a"))},
			why:       "listener a admits namespaces from Same"},
		{name: "port picks the listener that admits", gwNS: "infra",
			listeners: []gwapiv1.Listener{listener("a", 80, same), listener("b", 443, all)},
			ref:       gwapiv1.ParentReference{Port: ptr.To(gwapiv1.PortNumber(443))}, want: true},
		{name: "no listener on that port", gwNS: "infra", listeners: []gwapiv1.Listener{listener("a", 80, all)},
			ref: gwapiv1.ParentReference{Port: ptr.To(gwapiv1.PortNumber(8443))},
			why: "no listener matches the parentRef's sectionName and port"},
		{name: "kinds without the route's kind", gwNS: "infra", listeners: []gwapiv1.Listener{listener("grpc", 80, all, "GRPCRoute")},
			why: "listener grpc admits other kinds"},
		{name: "kinds with the route's kind", gwNS: "infra", listeners: []gwapiv1.Listener{listener("grpc", 80, all, "GRPCRoute")},
			kind: "GRPCRoute", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: tc.gwNS, Name: "gw"}, Spec: gwapiv1.GatewaySpec{Listeners: tc.listeners}}
			kind := tc.kind
			if kind == "" {
				kind = "HTTPRoute"
			}
			why, ok := admitsRoutes(gw, tc.ref, kind, "app")
			if ok != tc.want || why != tc.why {
				t.Errorf("admitsRoutes = %v, %q; want %v, %q", ok, why, tc.want, tc.why)
			}
		})
	}
}

// TestHookURLFromSecretIsHTTP specifies the URL a hook takes from its Secret:
// trimmed of white space, and only http or https with a host; the error
// names the Secret and key, never the value.
func TestHookURLFromSecretIsHTTP(t *testing.T) {
	tests := []struct{ value, want, err string }{
		{value: "https://hooks.test/start?token=t0k3n", want: "https://hooks.test/start?token=t0k3n"},
		{value: " http://hooks.test/start\n", want: "http://hooks.test/start"},
		{value: "file:///etc/passwd", err: "key url of Secret hook is not an http or https URL"},
		{value: "gopher://hooks.test:70/", err: "key url of Secret hook is not an http or https URL"},
		{value: "unix:///var/run/docker.sock", err: "key url of Secret hook is not an http or https URL"},
		{value: "http://", err: "key url of Secret hook is not an http or https URL"},
		{value: "http://a b/", err: "key url of Secret hook is not an http or https URL"},
		{value: "\n", err: "secret hook has no key url for the URL"},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "hook"}, Data: map[string][]byte{"url": []byte(tc.value)}}
			r := &RolloutReconciler{APIReader: fake.NewClientBuilder().WithObjects(s).Build()}
			ro := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "app"}}
			h := &backstopv1.Hook{Name: "gate", URLSecretRef: &backstopv1.SecretKeyReference{Name: "hook", Key: "url"}}
			got, err := r.hookURL(context.Background(), ro, h)
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("hookURL = %q, %v; want %q", got, err, tc.want)
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("hookURL error = %v; want %q", err, tc.err)
			case err != nil && strings.TrimSpace(tc.value) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.value)):
				t.Errorf("the error %q shows the Secret's value", err)
			}
		})
	}
}
