package request

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/nodebatch/nodebatch/shared/apierror"
)

// ErrEmptyBody is the cause of Decode's refusal of a body with nothing in
// it (an optional body: the caller may accept that).
var ErrEmptyBody = errors.New("request body is empty")

// Invalid turns apimachinery field errors into a 422 invalid answer (nil
// when errs is empty).
func Invalid(errs field.ErrorList) *apierror.Error {
	if len(errs) == 0 {
		return nil
	}
	e := apierror.New(apierror.Invalid, "the batch request is invalid")
	for _, fe := range errs {
		e.Fields = append(e.Fields, apierror.FieldError{Field: fe.Field, Value: valueString(fe), Reason: reason(fe)})
	}
	return e
}

func valueString(fe *field.Error) string {
	if fe.BadValue == nil || fe.Type == field.ErrorTypeRequired {
		return ""
	}
	switch v := fe.BadValue.(type) {
	case string:
		return v
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(fe.BadValue)
}

func reason(fe *field.Error) string {
	if fe.Detail != "" {
		return fe.Detail
	}
	return fe.Type.String()
}
