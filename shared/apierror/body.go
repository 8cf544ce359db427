package apierror

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// member is the standard part of an error body, in its wire order.
type member struct {
	Code              string       `json:"code"`
	Message           string       `json:"message"`
	Fields            []FieldError `json:"fields,omitempty"`
	Limit             string       `json:"limit,omitempty"`
	PerMinute         int          `json:"per_minute,omitempty"`
	Burst             int          `json:"burst,omitempty"`
	RetryAfterSeconds int          `json:"retry_after_seconds,omitempty"`
}

// body encodes {"error":{standard members, then Details' members}} (all
// in key order with KeyOrder) and a newline, HTML characters escaped (as json.Encoder does).
func (e *Error) body() ([]byte, error) {
	m := member{Code: e.Code(), Message: e.Message, Fields: e.Fields}
	if l := e.Limit; l != nil {
		m.Limit, m.PerMinute, m.Burst, m.RetryAfterSeconds = l.Name, l.PerMinute, l.Burst, l.RetryAfterSeconds()
	}
	inner, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode error: %w", err)
	}
	if e.Details != nil {
		extra, err := json.Marshal(e.Details)
		if err != nil {
			return nil, fmt.Errorf("encode error details: %w", err)
		}
		if len(extra) < 2 || extra[0] != '{' {
			return nil, fmt.Errorf("encode error details: %T is not a JSON object", e.Details)
		}
		if len(extra) > 2 {
			inner = append(append(inner[:len(inner)-1], ','), extra[1:]...)
		}
	}
	if e.KeyOrder {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(inner, &members); err != nil {
			return nil, fmt.Errorf("encode error in key order: %w", err)
		}
		if inner, err = json.Marshal(members); err != nil { // maps encode in key order
			return nil, fmt.Errorf("encode error in key order: %w", err)
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(inner) + 12)
	buf.WriteString(`{"error":`)
	buf.Write(inner)
	buf.WriteString("}\n")
	return buf.Bytes(), nil
}
