package request

import (
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateGuard checks confirm and max_nodes (a positive count when given)
// and copies them to spec.
func (b *Batch) validateGuard(spec *Spec) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{{"confirm", b.Confirm, &spec.Confirm}, {"max_nodes", b.MaxNodes, &spec.MaxNodes}} {
		if f.v == nil {
			continue
		}
		if *f.v < 1 {
			errs = append(errs, field.Invalid(field.NewPath(f.name), *f.v, "must be a positive number of nodes"))
			continue
		}
		*f.dst = *f.v
	}
	return errs
}
