package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// refreshLeeway renews a cached ID token this long before it expires, so a
// request never leaves with a token about to lapse.
const refreshLeeway = 30 * time.Second

// loginScopes are asked for in the authorization request.
var loginScopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}

const loginUsage = `Usage: kubectl nodebatch login [--nodebatch-url URL] [--context-name NAME] [--issuer URL --client-id ID] [--listen ADDR]

Signs in with OpenID Connect (authorization code with PKCE, redirect to a
loopback address, as kubelogin does) and saves the tokens in the contexts
file ($XDG_CONFIG_HOME/nodebatch/contexts.json, mode 0600) as context NAME,
which becomes the current one. Later commands use it and renew its ID token
with the refresh token. The issuer and client id come from the nodebatch
URL's /config.json unless given. The sign-in URL is printed; $BROWSER, when
set, is started with it.

kubectl nodebatch login --list prints the contexts (* marks the current one).
NODEBATCH_CONTEXT picks another context for one command; NODEBATCH_TOKEN and
--token-command win over every context.
`

// runLogin is `kubectl nodebatch login`.
func runLogin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("login", env)
	def := env.Getenv("NODEBATCH_URL")
	if def == "" {
		def = DefaultURL
	}
	var o loginOptions
	fs.StringVar(&o.url, "nodebatch-url", def, "nodebatch relay URL (env NODEBATCH_URL)")
	fs.StringVar(&o.name, "context-name", "", "name of the context to save (default: the current one, else \"default\")")
	fs.StringVar(&o.issuer, "issuer", "", "OIDC issuer URL (default: from the relay's /config.json)")
	fs.StringVar(&o.clientID, "client-id", "", "OAuth client id (default: from the relay's /config.json)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback address of the redirect listener")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the browser")
	list := fs.Bool("list", false, "list the contexts and exit")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *help {
		fmt.Fprint(env.Stdout, loginUsage)
		return nil
	}
	if fs.NArg() > 0 {
		return usagef("login takes no arguments, got %q", fs.Args())
	}
	path, err := contextsPath(env)
	if err != nil {
		return err
	}
	cs, err := loadContexts(path)
	if err != nil {
		return err
	}
	if *list {
		printContexts(env.Stdout, cs, env)
		return nil
	}
	if o.name == "" {
		if o.name = cs.Current; o.name == "" {
			o.name = "default"
		}
	}
	if err := checkContextName(o.name); err != nil {
		return usagef("--context-name: %v", err)
	}
	x, err := login(ctx, env, o)
	if err != nil {
		return err
	}
	// Saved under the lock, read afresh: a context another process saved
	// or renewed meanwhile is kept.
	err = updateContexts(ctx, path, func(cs *Contexts) (bool, error) {
		cs.Contexts[o.name] = x
		cs.Current = o.name
		return true, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Signed in as %s. Context %q (%s) saved in %s and made current.\n", x.Token.User, o.name, x.URL, path)
	return nil
}

type loginOptions struct {
	url, name, issuer, clientID, listen string
	timeout                             time.Duration
}

func printContexts(w io.Writer, cs *Contexts, env Env) {
	cur, _, _ := cs.selected(env)
	fmt.Fprintf(w, "CURRENT   NAME%-16s NODEBATCH URL%-18s USER\n", "", "")
	for _, n := range cs.names() {
		x := cs.Contexts[n]
		mark, user := "", ""
		if n == cur {
			mark = "*"
		}
		if x.Token != nil {
			user = x.Token.User
		}
		fmt.Fprintf(w, "%-9s %-20s %-31s %s\n", mark, n, x.URL, user)
	}
}

// login runs the authorization-code flow and answers the context to save.
func login(ctx context.Context, env Env, o loginOptions) (*Context, error) {
	x := &Context{URL: strings.TrimSuffix(o.url, "/"), Issuer: o.issuer, ClientID: o.clientID, Scopes: loginScopes}
	if x.Issuer == "" || x.ClientID == "" {
		uc, err := uiConfig(ctx, env, x.URL)
		if err != nil {
			return nil, err
		}
		if x.Issuer == "" {
			x.Issuer = uc.Issuer
		}
		if x.ClientID == "" {
			x.ClientID = uc.ClientID
		}
	}
	if err := x.check(); err != nil {
		return nil, usagef("%v", err)
	}
	host, _, err := net.SplitHostPort(o.listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, usagef("--listen %q: want a loopback IP address and port (the redirect must not leave this machine)", o.listen)
	}
	octx := oidc.ClientContext(ctx, env.HTTP)
	provider, err := oidc.NewProvider(octx, x.Issuer)
	if err != nil {
		return nil, fmt.Errorf("login: discover issuer %s: %w", x.Issuer, err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("login: listen for the redirect: %w", err)
	}
	defer ln.Close()
	conf := x.oauth2(provider)
	conf.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	verifier, state, nonce := oauth2.GenerateVerifier(), randomState(), randomState()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	codes := make(chan callback, 1)
	srv := &http.Server{Handler: callbackHandler(state, codes), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends at Shutdown
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // lets the browser's page finish; then the listener closes
	}()

	fmt.Fprintf(env.Stderr, "Open this URL in a browser to sign in to %s:\n\n  %s\n\n", x.URL, authURL)
	if b := env.Getenv("BROWSER"); b != "" {
		// The URL carries no secret (only the PKCE challenge), so it may be an argument.
		if err := exec.CommandContext(ctx, b, authURL).Start(); err != nil {
			fmt.Fprintf(env.Stderr, "could not start $BROWSER: %v\n", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var cb callback
	select {
	case cb = <-codes:
	case <-wctx.Done():
		return nil, &exitError{code: ExitUnauthorized, err: fmt.Errorf("login: no answer from the browser within %s", o.timeout)}
	}
	if cb.err != nil {
		return nil, &exitError{code: ExitUnauthorized, err: fmt.Errorf("login: %w", cb.err)}
	}
	tok, err := conf.Exchange(octx, cb.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, &exitError{code: ExitUnauthorized, err: fmt.Errorf("login: exchange the code: %w", err)}
	}
	t, err := verifiedTokens(octx, provider, x.ClientID, tok)
	if err != nil {
		return nil, err
	}
	if t.nonce != nonce {
		return nil, &exitError{code: ExitUnauthorized, err: errors.New("login: the ID token's nonce does not match the request")}
	}
	x.Token = &t.Tokens
	return x, nil
}

// uiConfig reads the issuer and client id the relay's pages sign in with.
func uiConfig(ctx context.Context, env Env, base string) (struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
}, error) {
	var c struct {
		Issuer   string `json:"issuer"`
		ClientID string `json:"client_id"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/config.json", nil)
	if err != nil {
		return c, usagef("--nodebatch-url %q: %v", base, err)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		return c, fmt.Errorf("login: read %s/config.json: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("login: read %s/config.json: %s (pass --issuer and --client-id)", base, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&c); err != nil {
		return c, fmt.Errorf("login: decode %s/config.json: %w", base, err)
	}
	return c, nil
}

type callback struct {
	code string
	err  error
}

// callbackHandler takes the browser's redirect: the first answer with the
// right state is passed on; a wrong state is refused and waited past.
func callbackHandler(state string, out chan<- callback) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if q.Get("state") != state {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "<p>This sign-in answer does not belong to the waiting <code>kubectl nodebatch login</code> (state mismatch).</p>")
			return
		}
		cb := callback{code: q.Get("code")}
		if e := q.Get("error"); e != "" {
			cb.err = fmt.Errorf("the issuer refused: %s %s", e, q.Get("error_description"))
		} else if cb.code == "" {
			cb.err = errors.New("the redirect carried no code")
		}
		// The page is answered before the command goes on (and closes
		// this listener).
		if cb.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<p>Sign-in failed: %s</p>", html.EscapeString(cb.err.Error()))
		} else {
			fmt.Fprint(w, "<p>Signed in to nodebatch. You can close this tab and go back to the terminal.</p>")
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		select {
		case out <- cb:
		default: // an answer was taken already
		}
	})
	return mux
}

func (x *Context) oauth2(p *oidc.Provider) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form, no secret
	scopes := x.Scopes
	if len(scopes) == 0 {
		scopes = loginScopes
	}
	return &oauth2.Config{ClientID: x.ClientID, Endpoint: ep, Scopes: scopes}
}

type verified struct {
	Tokens
	nonce string
}

// verifiedTokens checks the ID token in tok (signature, issuer, audience,
// expiry) and answers what the contexts file keeps.
func verifiedTokens(ctx context.Context, p *oidc.Provider, clientID string, tok *oauth2.Token) (verified, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return verified{}, &exitError{code: ExitUnauthorized, err: errors.New("login: the issuer answered no id_token")}
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw)
	if err != nil {
		return verified{}, &exitError{code: ExitUnauthorized, err: fmt.Errorf("login: verify the ID token: %w", err)}
	}
	var c struct {
		Email string `json:"email"`
	}
	_ = idt.Claims(&c) // the subject names the user when there is no e-mail
	user := c.Email
	if user == "" {
		user = idt.Subject
	}
	return verified{Tokens: Tokens{IDToken: raw, RefreshToken: tok.RefreshToken, Expiry: idt.Expiry, User: user}, nonce: idt.Nonce}, nil
}

// contextToken is the token source behind NODEBATCH_TOKEN and
// --token-command: the ID token of the context for url (the selected one,
// else the first whose URL it is), renewed with its refresh token when it
// is about to expire, and saved back (refresh tokens rotate). ok is false
// when no context has url.
//
// Renewal happens under the contexts file's lock, after reading the file
// again: a concurrent process that renewed first has saved a fresh ID
// token and the rotated refresh token, which are used as they are, so the
// used refresh token is never presented twice (the issuer would take that
// for theft and end the session).
func contextToken(ctx context.Context, env Env, url string) (tok string, ok bool, err error) {
	path, err := contextsPath(env)
	if err != nil {
		return "", false, nil
	}
	cs, err := loadContexts(path)
	if err != nil {
		return "", true, err
	}
	name, x, err := cs.contextFor(env, url)
	if err != nil {
		return "", true, err
	}
	if x == nil {
		return "", false, nil
	}
	if x.Token != nil && x.Token.IDToken != "" && x.fresh(env.Now()) {
		return x.Token.IDToken, true, nil
	}
	err = updateContexts(ctx, path, func(cs *Contexts) (bool, error) {
		var save bool
		tok, save, err = renew(ctx, env, name, cs.Contexts[name])
		return save, err
	})
	if err != nil {
		return "", true, err
	}
	return tok, true, nil
}

// contextFor is the context for url: the selected one, else the first
// whose URL it is; nil when none is.
func (c *Contexts) contextFor(env Env, url string) (string, *Context, error) {
	name, x, err := c.selected(env)
	if err != nil {
		return "", nil, err
	}
	url = strings.TrimSuffix(url, "/")
	if x != nil && x.URL == url {
		return name, x, nil
	}
	for _, n := range c.names() {
		if c.Contexts[n].URL == url {
			return n, c.Contexts[n], nil
		}
	}
	return "", nil, nil
}

// fresh reports whether x's ID token is good for refreshLeeway more.
func (x *Context) fresh(now time.Time) bool {
	return now.Add(refreshLeeway).Before(x.Token.Expiry)
}

// renew answers context name's ID token, x as read from the contexts file
// under its lock: the stored one when it is fresh (another process
// renewed it meanwhile), else one got with the stored refresh token, put
// in x with the rotated refresh token; save says x changed.
func renew(ctx context.Context, env Env, name string, x *Context) (tok string, save bool, err error) {
	relogin := fmt.Sprintf("run 'kubectl nodebatch login --context-name %s'", name)
	if x == nil || x.Token == nil || x.Token.IDToken == "" {
		return "", false, &exitError{code: ExitUnauthorized, err: fmt.Errorf("context %q is not signed in: %s", name, relogin)}
	}
	if x.fresh(env.Now()) {
		return x.Token.IDToken, false, nil
	}
	if x.Token.RefreshToken == "" {
		return "", false, &exitError{code: ExitUnauthorized, err: fmt.Errorf("context %q: the session expired: %s", name, relogin)}
	}
	octx := oidc.ClientContext(ctx, env.HTTP)
	provider, err := oidc.NewProvider(octx, x.Issuer)
	if err != nil {
		return "", false, fmt.Errorf("context %q: discover issuer %s: %w", name, x.Issuer, err)
	}
	// An expired token makes the source refresh at once.
	fresh, err := x.oauth2(provider).TokenSource(octx, &oauth2.Token{RefreshToken: x.Token.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			// The issuer refused the refresh token: forget it, so the next
			// command says "login" at once instead of asking again.
			x.Token.RefreshToken = ""
			return "", true, &exitError{code: ExitUnauthorized, err: fmt.Errorf("context %q: the issuer refused to renew the session (%s): %s", name, re.ErrorCode, relogin)}
		}
		return "", false, fmt.Errorf("context %q: renew the ID token: %w", name, err)
	}
	t, err := verifiedTokens(octx, provider, x.ClientID, fresh)
	if err != nil {
		return "", false, err
	}
	x.Token = &t.Tokens
	return t.IDToken, true, nil
}

func randomState() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
