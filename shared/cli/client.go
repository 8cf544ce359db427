package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBody bounds what the client reads of one API answer.
const maxBody = 16 << 20

// client talks to the nodebatch API (directly, or through the relay, which
// proxies /v1/ to it).
type client struct {
	base  string // scheme://host[:port], no trailing slash
	token string
	http  *http.Client
}

// apiError is the API's error body (docs/api.md "Errors") with its status.
type apiError struct {
	Status  int          `json:"-"`
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []fieldError `json:"fields"`
	Nodes   int          `json:"nodes"`
}

// fieldError is one entry of an error's fields.
type fieldError struct {
	Field  string `json:"field"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if b.Len() == 0 {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "\nerror: field %q", f.Field)
		if f.Value != "" {
			fmt.Fprintf(&b, " (value %q)", f.Value)
		}
		if f.Reason != "" {
			b.WriteString(": " + f.Reason)
		}
	}
	return b.String()
}

// decodeError reads an error answer; a body that is not the API's error
// format still yields an error naming the status.
func decodeError(status int, body []byte) *apiError {
	var env struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return &apiError{Status: status, Message: fmt.Sprintf("HTTP %d: %s", status, strings.ToValidUTF8(msg, "?"))}
	}
	env.Error.Status = status
	return env.Error
}

// do sends one request and returns the raw body of a 2xx answer, or an
// *apiError.
func (c *client) do(ctx context.Context, method, path string, body any) (status int, raw []byte, err error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, raw, decodeError(resp.StatusCode, raw)
	}
	return resp.StatusCode, raw, nil
}
