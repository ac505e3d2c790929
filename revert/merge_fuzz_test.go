package revert

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzMerge3(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), []byte("a\nb\nC\n"))
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		merged, conflicts := Merge3(base, ours, theirs)

		// Conflicts do not depend on which side is which.
		_, swapped := Merge3(base, theirs, ours)
		if !reflect.DeepEqual(conflicts, swapped) {
			t.Errorf("conflicts %v, with sides swapped %v", conflicts, swapped)
		}
		for _, c := range conflicts {
			if c.BaseStart < 1 || c.BaseEnd < c.BaseStart {
				t.Errorf("bad conflict range %v", c)
			}
		}
		if conflicts == nil && bytes.Contains(merged, []byte("<<<<<<< ours\n")) && !bytes.Contains(ours, []byte("<<<<<<< ours\n")) && !bytes.Contains(theirs, []byte("<<<<<<< ours\n")) {
			t.Errorf("clean merge %q has a conflict marker", merged)
		}

		// Nothing changed on our side: the result is theirs.
		if got, c := Merge3(base, base, theirs); !bytes.Equal(got, theirs) || c != nil {
			t.Errorf("Merge3(base, base, theirs) = %q, %v; want %q", got, c, theirs)
		}
		// Nothing changed on their side: the result is ours.
		if got, c := Merge3(base, ours, base); !bytes.Equal(got, ours) || c != nil {
			t.Errorf("Merge3(base, ours, base) = %q, %v; want %q", got, c, ours)
		}
		// The same change on both sides is no conflict.
		if got, c := Merge3(base, ours, ours); !bytes.Equal(got, ours) || c != nil {
			t.Errorf("Merge3(base, ours, ours) = %q, %v; want %q", got, c, ours)
		}
	})
}
