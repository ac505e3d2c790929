package controllers

import "testing"

// TestPlanHandBack shows the order of the hand-back: traffic leaves the
// target before its template changes, comes to it only once it runs the
// primary's template at the primary's size and is ready, and the
// finalizer goes last, once nothing that must outlive the Rollout is
// still owned by it.
func TestPlanHandBack(t *testing.T) {
	// done is the world once everything is handed back.
	done := handBackWorld{SameTemplate: true, TargetReplicas: 4, WantReplicas: 4, TargetReady: true,
		CanaryService: true, OnTarget: true}
	with := func(edit func(*handBackWorld)) handBackWorld {
		w := done
		edit(&w)
		return w
	}
	for _, tc := range []struct {
		name  string
		world handBackWorld
		want  handBackAction
	}{
		{"nothing to hand back lets go at once, whatever else holds",
			handBackWorld{Skip: "Deployment app does not exist", OnPrimary: false}, handBackLetGo},
		{"mid-release: the canary's share goes to the primary first",
			with(func(w *handBackWorld) {
				w.SameTemplate, w.OnPrimary, w.TargetReplicas, w.TargetReady = false, false, 2, true
			}), handBackTrafficToPrimary},
		{"then the target gets the primary's template",
			with(func(w *handBackWorld) { w.SameTemplate, w.OnPrimary, w.TargetReplicas = false, true, 2 }), handBackRestoreTemplate},
		{"a target at zero with another template is not scaled before it has the primary's",
			with(func(w *handBackWorld) {
				w.SameTemplate, w.OnPrimary, w.TargetReplicas, w.TargetReady = false, true, 0, false
			}), handBackRestoreTemplate},
		{"idle: the target is scaled up to the primary's size",
			with(func(w *handBackWorld) { w.TargetReplicas, w.TargetReady, w.OnTarget = 0, false, false }), handBackScaleUp},
		{"a canary smaller than the primary is scaled up too",
			with(func(w *handBackWorld) { w.TargetReplicas, w.OnTarget = 1, false }), handBackScaleUp},
		{"a target an autoscaler made larger is not scaled",
			with(func(w *handBackWorld) { w.TargetReplicas, w.OnTarget = 9, false }), handBackTrafficToTarget},
		{"no traffic moves to a target that is not ready",
			with(func(w *handBackWorld) { w.TargetReady, w.OnTarget = false, false }), handBackWait},
		{"a target that stops being ready is waited for, even with traffic on it",
			with(func(w *handBackWorld) { w.TargetReady = false }), handBackWait},
		{"a missing canary Service is made again before traffic goes to it",
			with(func(w *handBackWorld) { w.CanaryService, w.OnTarget = false, false }), handBackRestoreService},
		{"a ready target gets all traffic",
			with(func(w *handBackWorld) { w.OnTarget = false }), handBackTrafficToTarget},
		{"then what must outlive the Rollout is orphaned",
			with(func(w *handBackWorld) { w.Owned = []string{"Service/app-canary", "HTTPRoute/app"} }), handBackOrphan},
		{"and the finalizer goes last", done, handBackLetGo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planHandBack(tc.world); got != tc.want {
				t.Errorf("planHandBack(%+v) = %s; want %s", tc.world, got, tc.want)
			}
		})
	}
}

// TestPlanHandBackConverges runs the plan against a simulated cluster in
// which each step does what it says, from every state the hand-back can
// be stopped in, and checks that it ends with the finalizer removed and
// never sends traffic to a target that is not ready or not yet running the
// primary's template.
func TestPlanHandBackConverges(t *testing.T) {
	start := []struct {
		name  string
		world handBackWorld
	}{
		{"idle", handBackWorld{SameTemplate: true, TargetReplicas: 0, WantReplicas: 4, OnPrimary: true, CanaryService: true,
			Owned: []string{"Service/app-canary", "HTTPRoute/app"}}},
		{"mid-release", handBackWorld{SameTemplate: false, TargetReplicas: 2, WantReplicas: 4, TargetReady: true, CanaryService: true,
			Owned: []string{"Service/app-canary", "HTTPRoute/app"}}},
		{"scaled, not ready", handBackWorld{SameTemplate: true, TargetReplicas: 4, WantReplicas: 4, OnPrimary: true, CanaryService: true,
			Owned: []string{"Service/app-canary"}}},
		{"canary Service deleted", handBackWorld{SameTemplate: true, TargetReplicas: 4, WantReplicas: 4, TargetReady: true, OnPrimary: true}},
		{"orphaned, finalizer left", handBackWorld{SameTemplate: true, TargetReplicas: 4, WantReplicas: 4, TargetReady: true,
			CanaryService: true, OnTarget: true}},
	}
	for _, tc := range start {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.world
			// The target's pods get ready one look after it is scaled
			// with the primary's template, as a Deployment controller
			// would have them.
			for steps := 0; ; steps++ {
				if steps > 20 {
					t.Fatalf("no end after 20 steps; at %+v", w)
				}
				a := planHandBack(w)
				switch a {
				case handBackLetGo:
					if !w.OnTarget && w.Skip == "" {
						t.Fatalf("let go with traffic not on the target: %+v", w)
					}
					return
				case handBackTrafficToPrimary:
					w.OnPrimary, w.OnTarget = true, false
				case handBackRestoreTemplate:
					if !w.OnPrimary {
						t.Fatalf("template changed under the canary's traffic: %+v", w)
					}
					w.SameTemplate, w.TargetReady = true, false
				case handBackScaleUp:
					w.TargetReplicas, w.TargetReady = w.WantReplicas, false
				case handBackWait:
					w.TargetReady = w.SameTemplate && w.TargetReplicas >= w.WantReplicas
				case handBackRestoreService:
					w.CanaryService = true
				case handBackTrafficToTarget:
					if !w.TargetReady || !w.SameTemplate || !w.CanaryService {
						t.Fatalf("traffic sent to a target that cannot take it: %+v", w)
					}
					w.OnTarget, w.OnPrimary = true, false
				case handBackOrphan:
					w.Owned = nil
				}
			}
		})
	}
}
