// Package kubeproxy is a reverse proxy in front of the local kube-apiserver
// for tests and the benchmark: it listens on plain HTTP on 127.0.0.1,
// forwards to the HTTPS API server (auth headers pass through), and records
// what the batch pipeline does to the cluster: mutating requests per node,
// how many were in flight at once (overall and per caller-chosen group), a
// timed log of every mutation. It can add latency to every request and
// inject faults (an error status with Retry-After, a delay, a timeout) into
// chosen ones, and hold mutations at a Gate until a test releases them.
package kubeproxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Fault is what to do to one request instead of (or before) forwarding it.
type Fault struct {
	// Delay is waited before answering or forwarding. Longer than the
	// client's timeout, it is a timeout.
	Delay time.Duration
	// Status, when not zero, is answered (with a Kubernetes Status body)
	// instead of forwarding the request.
	Status int
	// RetryAfter, with Status, is sent as Retry-After (whole seconds, at
	// least 0) and as the Status' retryAfterSeconds.
	RetryAfter time.Duration
	// Message, with Status, is the Status' message; empty: "injected by
	// kubeproxy: <code> <text>".
	Message string
}

// Options configure a Proxy. The zero value forwards untouched.
type Options struct {
	// Latency is added to every request before it is forwarded.
	Latency time.Duration
	// Fault, if set, is asked for every request; a non-nil answer is
	// injected. It is called concurrently.
	Fault func(r *http.Request) *Fault
	// Group, if set, labels each mutating request (for example with the
	// batch a node belongs to); Stats reports the maximum concurrency per
	// label. It is called concurrently.
	Group func(r *http.Request) string
	// Gate, if set, may hold mutating requests (before Latency and Fault)
	// until the test has done what it must do mid-batch.
	Gate *Gate
}

// Request is one mutating request as the proxy saw it.
type Request struct {
	Method string
	Path   string
	Node   string // "" when the path names no node
	Group  string
	Start  time.Time
	End    time.Time // when the answer started, or the request was dropped
	Status int       // status answered; 0 when the client went away first
	Fault  bool      // the answer was injected, the API server never saw it
}

// Stats is what the proxy has seen since it started (or since Reset).
type Stats struct {
	// Requests counts every request, reads included.
	Requests int
	// Mutations counts PATCH/PUT/POST/DELETE requests per node name.
	Mutations map[string]int
	// MaxInFlight is the most mutating requests in flight at one moment.
	MaxInFlight int
	// MaxInFlightByGroup is MaxInFlight per Options.Group label.
	MaxInFlightByGroup map[string]int
	// Faults counts injected answers.
	Faults int
	// Log lists every mutating request, in the order they started.
	Log []Request
}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	opts   Options
	url    string
	server *http.Server
	rp     *httputil.ReverseProxy
	done   chan struct{}

	mu            sync.Mutex
	stats         Stats
	gen           int // bumped by Reset, so requests from before it are not logged into the new log
	inFlight      int
	inFlightGroup map[string]int
}

// New starts a proxy on 127.0.0.1 (a free port) forwarding to target, the
// API server's https:// URL. The API server's certificate is not verified:
// this is a local test tool.
func New(target string, opts Options) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kubeproxy: parse target %q: %v", target, errOr(err, "no host"))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kubeproxy: listen: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // local test API server with a self-signed certificate
	tr.MaxIdleConnsPerHost = 256
	p := &Proxy{
		opts:          opts,
		url:           "http://" + ln.Addr().String(),
		done:          make(chan struct{}),
		inFlightGroup: map[string]int{},
	}
	p.resetLocked()
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		Transport:     tr,
		FlushInterval: -1, // watches stream
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil { // else the client is gone: nobody to answer
				http.Error(w, "kubeproxy: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.server.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return p, nil
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// URL is the proxy's base URL, http://127.0.0.1:PORT.
func (p *Proxy) URL() string { return p.url }

// Close stops the proxy and ends open connections (watches included).
func (p *Proxy) Close() {
	_ = p.server.Close()
	<-p.done
}

// RestConfig returns a copy of base that talks to the API server through
// the proxy: Host is the proxy, TLS settings are cleared, the bearer token
// is kept (it passes through to the API server). Client certificates cannot
// pass a proxy that terminates the connection; use token identities.
func (p *Proxy) RestConfig(base *rest.Config) *rest.Config {
	c := rest.CopyConfig(base)
	c.Host = p.url
	c.TLSClientConfig = rest.TLSClientConfig{}
	return c
}

// Stats returns a copy of what the proxy has seen.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Mutations = make(map[string]int, len(p.stats.Mutations))
	for k, v := range p.stats.Mutations {
		s.Mutations[k] = v
	}
	s.MaxInFlightByGroup = make(map[string]int, len(p.stats.MaxInFlightByGroup))
	for k, v := range p.stats.MaxInFlightByGroup {
		s.MaxInFlightByGroup[k] = v
	}
	s.Log = append([]Request(nil), p.stats.Log...)
	return s
}

// Reset forgets what the proxy has seen; requests in flight still finish
// into the new log.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetLocked()
}

func (p *Proxy) resetLocked() {
	p.gen++
	p.stats = Stats{Mutations: map[string]int{}, MaxInFlightByGroup: map[string]int{}}
}

// NodeName returns the node a request path names (/api/v1/nodes/{name},
// with an optional subresource), or "".
func NodeName(path string) string {
	rest, ok := strings.CutPrefix(path, "/api/v1/nodes/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func mutating(method string) bool {
	switch method {
	case http.MethodPatch, http.MethodPut, http.MethodPost, http.MethodDelete:
		return true
	}
	return false
}

// ServeHTTP records, delays, injects or forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w}
	var req *Request
	p.mu.Lock()
	p.stats.Requests++
	p.mu.Unlock()
	if p.opts.Gate != nil || p.opts.Latency > 0 || p.opts.Fault != nil {
		// The server notices a client that hangs up (and ends r's context)
		// only once the request body has been read: read it before any
		// wait, so a write whose client gave up is dropped, not forwarded
		// late (which would make a retry find it already done).
		if !bufferBody(r) {
			return
		}
	}
	if mutating(r.Method) {
		req = &Request{Method: r.Method, Path: r.URL.Path, Node: NodeName(r.URL.Path)}
		if p.opts.Group != nil {
			req.Group = p.opts.Group(r)
		}
		gen, idx := p.begin(req)
		// Recorded when the answer starts, before the client can see any of
		// it: a client that has its answer finds the request in Stats.
		rec.onAnswer = func(status int) { p.end(gen, idx, req, status) }
		defer func() {
			if !rec.answered {
				p.end(gen, idx, req, 0) // the client went away first
			}
		}()
		if p.opts.Gate != nil && !p.opts.Gate.wait(r) {
			return
		}
	}
	if !sleep(r.Context(), p.opts.Latency) {
		return
	}
	if p.opts.Fault != nil {
		if f := p.opts.Fault(r); f != nil {
			if !sleep(r.Context(), f.Delay) {
				return
			}
			if f.Status != 0 {
				p.mu.Lock()
				p.stats.Faults++
				p.mu.Unlock()
				if req != nil {
					req.Fault = true
				}
				writeStatus(rec, f)
				return
			}
		}
	}
	p.rp.ServeHTTP(rec, r)
}

// begin records a mutating request's start and returns where it is logged.
func (p *Proxy) begin(req *Request) (gen, idx int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req.Start = time.Now()
	if req.Node != "" {
		p.stats.Mutations[req.Node]++
	}
	p.inFlight++
	p.stats.MaxInFlight = max(p.stats.MaxInFlight, p.inFlight)
	if req.Group != "" {
		p.inFlightGroup[req.Group]++
		p.stats.MaxInFlightByGroup[req.Group] = max(p.stats.MaxInFlightByGroup[req.Group], p.inFlightGroup[req.Group])
	}
	p.stats.Log = append(p.stats.Log, *req)
	return p.gen, len(p.stats.Log) - 1
}

func (p *Proxy) end(gen, idx int, req *Request, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if req.Group != "" {
		p.inFlightGroup[req.Group]--
	}
	if gen == p.gen {
		p.stats.Log[idx].End = time.Now()
		p.stats.Log[idx].Status = status
		p.stats.Log[idx].Fault = req.Fault
	}
}

// bufferBody replaces r's body with an in-memory copy; false when reading
// it failed (the client went away).
func bufferBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return false
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	return true
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeStatus answers with a Kubernetes Status object, so client-go turns
// it into the matching apierrors error (IsConflict, IsTooManyRequests, ...).
func writeStatus(w http.ResponseWriter, f *Fault) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  cmp.Or(f.Message, fmt.Sprintf("injected by kubeproxy: %d %s", f.Status, http.StatusText(f.Status))),
		Reason:   reasonFor(f.Status),
		Code:     int32(f.Status),
	}
	if f.RetryAfter > 0 || f.Status == http.StatusTooManyRequests {
		secs := int(f.RetryAfter / time.Second)
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: int32(secs)}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(st) // the client may be gone; nothing to do
}

func reasonFor(code int) metav1.StatusReason {
	switch code {
	case http.StatusConflict:
		return metav1.StatusReasonConflict
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	case http.StatusGatewayTimeout:
		return metav1.StatusReasonTimeout
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	}
	return metav1.StatusReasonUnknown
}

// statusWriter remembers the status code; Unwrap lets the reverse proxy
// flush through it (watches).
type statusWriter struct {
	http.ResponseWriter
	status   int
	answered bool
	onAnswer func(status int) // called once, before the answer is passed on
}

func (w *statusWriter) answer(code int) {
	if w.answered {
		return
	}
	w.answered, w.status = true, code
	if w.onAnswer != nil {
		w.onAnswer(code)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx are interim answers
		w.answer(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.answer(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
