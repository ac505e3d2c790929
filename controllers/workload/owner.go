package workload

import (
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// own makes ro the controller of obj. It refuses an object that another
// controller owns, so Backstop never takes over an object it did not make
// for this Rollout.
func own(c client.Client, ro *backstopv1.Rollout, obj client.Object) error {
	err := controllerutil.SetControllerReference(ro, obj, c.Scheme())
	var owned *controllerutil.AlreadyOwnedError
	if errors.As(err, &owned) {
		return fmt.Errorf("%s %s/%s belongs to %s %q, not to Rollout %q",
			kindOf(c, obj), obj.GetNamespace(), obj.GetName(), owned.Owner.Kind, owned.Owner.Name, ro.Name)
	}
	return err
}

// ownedBy says whether ro is obj's controller.
func ownedBy(ro *backstopv1.Rollout, obj client.Object) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			return ref.UID == ro.UID
		}
	}
	return false
}

func kindOf(c client.Client, obj client.Object) string {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return "object"
	}
	return gvk.Kind
}
