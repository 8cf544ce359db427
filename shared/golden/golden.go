// Package golden records HTTP answers (status, the headers a client reads,
// body bytes) in golden files and compares later answers with them, so a
// change that must not touch the wire can prove it did not. Values that
// differ from run to run (batch ids, timestamps, ports, latencies, tickets,
// page tokens, per-test names) are replaced by placeholders; everything
// else, key order and spacing included, is compared byte for byte.
package golden

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Headers are the answer headers a golden file records (when present).
var Headers = []string{"Content-Type", "Cache-Control", "Retry-After", "WWW-Authenticate", "Allow"}

// rules replace what varies between runs. Order matters: ids before the
// generic patterns that could match parts of them.
var rules = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\d{8}t\d{6}-[0-9a-f]{10}`), "<id>"},
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`), "<time>"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	{regexp.MustCompile(`"(latency_ms|p50_ms|p95_ms|max_ms|nodes_per_second|resource_version)":("[^"]*"|[0-9.e+-]+)`), `"$1":<n>`},
	{regexp.MustCompile(`"(ticket|next_page_token)":"[^"]*"`), `"$1":"<token>"`},
	{regexp.MustCompile(`resourceVersion:? \d+`), "resourceVersion <n>"},
}

// Normalize replaces the varying parts of b: the fixed rules, then each
// literal of subst (old, new pairs: a test's node prefix, say).
func Normalize(b []byte, subst ...string) []byte {
	for i := 0; i+1 < len(subst); i += 2 {
		if subst[i] != "" {
			b = bytes.ReplaceAll(b, []byte(subst[i]), []byte(subst[i+1]))
		}
	}
	for _, r := range rules {
		b = r.re.ReplaceAll(b, []byte(r.repl))
	}
	return b
}

// Render is the golden form of an answer: "HTTP <status>", the recorded
// headers, a blank line, the body as sent.
func Render(status int, h http.Header, body []byte) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "HTTP %d\n", status)
	for _, k := range Headers {
		if v := h.Values(k); len(v) > 0 {
			fmt.Fprintf(&buf, "%s: %s\n", k, strings.Join(v, ", "))
		}
	}
	buf.WriteString("\n")
	buf.Write(body)
	return buf.Bytes()
}

// Check compares got (already normalized) with the golden file at path, or
// rewrites the file when update is true.
func Check(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("golden: %v", err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("golden: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v (run the test with -update to record it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("answer differs from %s (-want +got):\n%s", path, diff(string(want), string(got)))
	}
}

// diff shows the first line that differs, with the lines around it.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n-%s\n+%s", i+1, wl, gl)
		}
	}
	return "(equal lines; trailing bytes differ)"
}
