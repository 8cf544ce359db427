package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// contextsFile is the contexts file under the user's config folder
// ($XDG_CONFIG_HOME, else ~/.config): one entry per nodebatch the user
// signs in to, like kubeconfig's contexts. It holds refresh tokens, so it
// is written with mode 0600 in a 0700 folder.
const contextsFile = "nodebatch/contexts.json"

// maxContextsBytes bounds what is read from the contexts file.
const maxContextsBytes = 1 << 20

// Contexts is the contexts file.
type Contexts struct {
	// Current names the context used when NODEBATCH_CONTEXT is not set.
	Current  string              `json:"current_context,omitempty"`
	Contexts map[string]*Context `json:"contexts"`
}

// Context is one nodebatch endpoint and how to sign in to it.
type Context struct {
	URL      string   `json:"nodebatch_url"`
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes,omitempty"`
	Token    *Tokens  `json:"tokens,omitempty"`
}

// Tokens are a context's cached tokens.
type Tokens struct {
	IDToken      string    `json:"id_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"` // the ID token's "exp"
	User         string    `json:"user,omitempty"`
}

// contextsPath is where the contexts file lives for env.
func contextsPath(env Env) (string, error) {
	dir := env.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the XDG spec: a relative value is ignored
		home := env.Getenv("HOME")
		if home == "" {
			return "", errors.New("contexts file: neither XDG_CONFIG_HOME nor HOME is set")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, contextsFile), nil
}

// loadContexts reads the contexts file; a missing file is an empty one.
func loadContexts(path string) (*Contexts, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Contexts{Contexts: map[string]*Context{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read contexts %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxContextsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read contexts %s: %w", path, err)
	}
	if len(b) > maxContextsBytes {
		return nil, fmt.Errorf("read contexts %s: larger than %d bytes", path, maxContextsBytes)
	}
	c, err := parseContexts(b)
	if err != nil {
		return nil, fmt.Errorf("read contexts %s: %w", path, err)
	}
	return c, nil
}

// parseContexts decodes and checks a contexts file.
func parseContexts(b []byte) (*Contexts, error) {
	var c Contexts
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	for name, x := range c.Contexts {
		if err := checkContextName(name); err != nil {
			return nil, err
		}
		if x == nil {
			return nil, fmt.Errorf("context %q: empty", name)
		}
		if err := x.check(); err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
	}
	if c.Current != "" && c.Contexts[c.Current] == nil {
		return nil, fmt.Errorf("current_context %q: no such context", c.Current)
	}
	return &c, nil
}

func checkContextName(name string) error {
	if name == "" || len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("context name %q: want 1-64 letters, digits, '-', '_' or '.'", name)
	}
	return nil
}

func (x *Context) check() error {
	for _, f := range []struct{ name, v string }{{"nodebatch_url", x.URL}, {"issuer", x.Issuer}} {
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s %q: want an http(s) URL", f.name, f.v)
		}
	}
	if x.ClientID == "" {
		return errors.New("client_id is empty")
	}
	return nil
}

// save writes the contexts file atomically, mode 0600.
func (c *Contexts) save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save contexts: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save contexts: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".contexts-*")
	if err != nil {
		return fmt.Errorf("save contexts: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save contexts: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save contexts: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save contexts: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save contexts: %w", err)
	}
	return nil
}

// selected is the context to use: NODEBATCH_CONTEXT, else the current one;
// nil when there is none.
func (c *Contexts) selected(env Env) (string, *Context, error) {
	name := env.Getenv("NODEBATCH_CONTEXT")
	if name == "" {
		name = c.Current
	}
	if name == "" {
		return "", nil, nil
	}
	x := c.Contexts[name]
	if x == nil {
		return "", nil, usagef("NODEBATCH_CONTEXT %q: no such context (have %s)", name, strings.Join(c.names(), ", "))
	}
	return name, x, nil
}

func (c *Contexts) names() []string {
	var out []string
	for n := range c.Contexts {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// contextURL is the selected context's nodebatch URL, or "" (the default
// of --nodebatch-url when NODEBATCH_URL is not set).
func contextURL(env Env) string {
	path, err := contextsPath(env)
	if err != nil {
		return ""
	}
	c, err := loadContexts(path)
	if err != nil {
		return ""
	}
	_, x, err := c.selected(env)
	if err != nil || x == nil {
		return ""
	}
	return x.URL
}
