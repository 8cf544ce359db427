package probe

import (
	"strings"
	"testing"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/request"
)

func TestProbe(t *testing.T) {
	for _, body := range []string{
		`{"nodes":["n1"],"labels":{"a=b":""},"operation":"remove"}`,
		`{"nodes":["n1"],"labels":{"a":"b,c=d"}}`,
	} {
		var s request.SeedLabels
		if e := request.Decode(strings.NewReader(body), &s); e != nil {
			t.Fatal(e)
		}
		b, e := s.Batch()
		if e != nil {
			t.Logf("%s → %v", body, e)
			continue
		}
		spec, e := b.Validate(request.DefaultLimits(), change.DefaultProtection())
		if e != nil {
			t.Logf("%s → %v", body, e)
			continue
		}
		t.Logf("%s → %+v", body, spec.Set)
	}
	for _, body := range []string{
		`{"nodes":["n1"],"taints":[{"key":"a=b:NoSchedule-x","effect":"NoSchedule"}]}`,
		`{"nodes":["n1"],"taints":[{"key":"gpu","value":"x:NoExecute","effect":"NoSchedule"}],"operation":"add"}`,
		`{"nodes":["n1"],"taints":[{"key":"gpu:NoSchedule","effect":""}],"operation":"add"}`,
		`{"nodes":["n1"],"taints":[{"key":"gpu=v:NoSchedule","effect":""}],"operation":"remove"}`,
	} {
		var s request.SeedTaints
		if e := request.Decode(strings.NewReader(body), &s); e != nil {
			t.Fatal(e)
		}
		b, e := s.Batch()
		if e != nil {
			t.Logf("%s → %v", body, e)
			continue
		}
		spec, e := b.Validate(request.DefaultLimits(), change.DefaultProtection())
		if e != nil {
			t.Logf("%s → %v", body, e)
			continue
		}
		t.Logf("%s → %+v", body, spec.Set)
	}
}
