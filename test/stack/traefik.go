package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/test/proc"
)

// The Gateway every route of the stack attaches to.
const (
	GatewayClass     = "traefik"
	GatewayNamespace = "gateway"
	GatewayName      = "demo"
	// traefikController is the controllerName traefik serves.
	traefikController = "traefik.io/gateway-controller"
	// GatewayThrottle is traefik's providers throttle: how long it waits
	// after a change of the Gateway API objects before it applies it.
	GatewayThrottle = 100 * time.Millisecond
)

// traefik starts traefik with its Gateway API provider reading the
// apiserver, and makes the GatewayClass and the Gateway, whose listener
// port is that of traefik's entry point on 127.0.0.1. The provider's
// throttle is lowered so that a weight change is served within a fraction
// of a second.
func (s *Stack) traefik(ctx context.Context) error {
	web, err := freePort()
	if err != nil {
		return err
	}
	ping, err := freePort()
	if err != nil {
		return err
	}
	ca := filepath.Join(s.Dir, "ca.crt")
	if err := os.WriteFile(ca, s.Env.Config.CAData, 0o644); err != nil {
		return err
	}
	s.Gateway = net.JoinHostPort("127.0.0.1", strconv.Itoa(web))
	p, err := proc.Start(s.Dir, "traefik", bin("traefik"), []string{
		"--entrypoints.web.address=" + s.Gateway,
		"--entrypoints.traefik.address=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ping)),
		"--ping=true",
		"--providers.kubernetesgateway=true",
		"--providers.kubernetesgateway.endpoint=" + s.Env.Config.Host,
		"--providers.kubernetesgateway.token=" + s.token,
		"--providers.kubernetesgateway.certauthfilepath=" + ca,
		"--providers.kubernetesgateway.statusaddress.ip=127.0.0.1",
		"--providers.providersthrottleduration=" + GatewayThrottle.String(),
		"--log.level=INFO",
		"--accesslog=false",
		"--global.checknewversion=false",
		"--global.sendanonymoususage=false",
	})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)

	c := s.Env.Client
	class := &gwapiv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: GatewayClass},
		Spec: gwapiv1.GatewayClassSpec{ControllerName: traefikController}}
	if err := c.Create(ctx, class); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: GatewayNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	all := gwapiv1.NamespacesFromAll
	gw := &gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: GatewayNamespace, Name: GatewayName},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: GatewayClass, Listeners: []gwapiv1.Listener{{
			Name: "web", Protocol: gwapiv1.HTTPProtocolType, Port: gwapiv1.PortNumber(web),
			AllowedRoutes: &gwapiv1.AllowedRoutes{Namespaces: &gwapiv1.RouteNamespaces{From: ptr.To(all)}},
		}}}}
	if err := c.Create(ctx, gw); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	pingURL := fmt.Sprintf("http://127.0.0.1:%d/ping", ping)
	return proc.WaitFor(ctx, "traefik to program the Gateway", time.Minute, p, func() error {
		resp, err := http.Get(pingURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		var got gwapiv1.Gateway
		if err := c.Get(ctx, client.ObjectKeyFromObject(gw), &got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, string(gwapiv1.GatewayConditionProgrammed)) {
			return errors.New("the Gateway is not Programmed yet")
		}
		return nil
	})
}

// freePort is a TCP port free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
