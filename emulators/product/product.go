// Package product runs the whole nodebatch product in one process on top of a
// running local stack: the development OIDC issuer, the batch function (the
// API), the patch function, the push deliverer between Pub/Sub and the patch
// function, and the relay with the web UI. Tests of the whole product (web UI,
// security matrix, faults) and `make bench` use it; `make run` starts the same
// parts as separate processes (emulators/cmd/stack). Each service is built by
// its production constructor from the settings its loader reads (Start).
package product

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/pushdeliver"
	"github.com/nodebatch/nodebatch/functions/batch"
	fconfig "github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"
	"github.com/nodebatch/nodebatch/functions/patch"
	"github.com/nodebatch/nodebatch/relay"
	rconfig "github.com/nodebatch/nodebatch/relay/config"
	"github.com/nodebatch/nodebatch/relay/service"
	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Audience is the client id user tokens are minted for.
const Audience = "nodebatch"

// SchedulerAccount is the service account allowlisted for scheduled batches.
const SchedulerAccount = "scheduler@nodebatch-local.iam.gserviceaccount.com"

// Options say where the stack is and how to shape the product. The
// Firestore and Pub/Sub clients reach the emulators through
// FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST.
type Options struct {
	Project string // Firestore and Pub/Sub project; required

	// APIKube is the batch function's identity, PatchKube the patch
	// function's (the harness' PatcherConfig: it may only impersonate).
	// Every call made for a person goes through a shared-transport pool
	// over them (shared/kubeclient), impersonating that person; the UI's
	// /v1/nodes lists as the signed-in user too. Point PatchKube at a
	// kubeproxy to count or slow its requests.
	APIKube, PatchKube *rest.Config

	// Addresses to listen on; empty picks a free loopback port.
	APIAddr, PatchAddr, RelayAddr, IssuerAddr string

	MaxInFlight int  // push deliverer's global cap (default 100)
	MaxAttempts int  // pushes before dead-lettering (default pushdeliver's, 5)
	Duplicate   bool // push every message twice

	// The settings below are the batch function's, passed to it as its
	// environment (settings): 0 leaves the setting unset (its default in
	// functions/config), < 0 sets it to "0" (off).
	InlineMax int // NODEBATCH_INLINE_MAX: batches up to this size run inline
	// RatePerMinute and RateBurst are the per-user batch rate limit
	// (NODEBATCH_RATE_PER_MINUTE / NODEBATCH_RATE_BURST).
	RatePerMinute, RateBurst int
	// PreviewPerMinute and PreviewBurst are the per-user preview limit
	// (NODEBATCH_PREVIEW_PER_MINUTE / NODEBATCH_PREVIEW_BURST).
	PreviewPerMinute, PreviewBurst int

	Logger *slog.Logger // default: discard

	// Fault-test controls. PatchFirestore, if set, intercepts every unary
	// Firestore call of the patch function (its own client; for example to
	// fail the commit that records a node after its patch landed).
	// BeforeDeadLetter, if set, is called before every push of the
	// dead-letter deliverer and may block (hold dead letters). CancelWait
	// bounds a cancel's settle wait (default functions/batch's).
	PatchFirestore   grpc.UnaryClientInterceptor
	BeforeDeadLetter func(ctx context.Context) error
	CancelWait       time.Duration

	// Telemetry, if set, instruments every part (shared/telemetry): the
	// API, patch and relay servers each serve its /metrics.
	Telemetry *telemetry.Telemetry
}

// Product is a running product. Close stops it.
type Product struct {
	APIURL, PatchURL, RelayURL, IssuerURL string

	Issuer    *oidcdev.Issuer // mints user tokens
	Google    *oidcdev.Issuer // stands in for Google (scheduler tokens)
	Deliverer *pushdeliver.Deliverer
	Store     *store.Store      // the batch function's store
	Firestore *firestore.Client // the batch function's Firestore client
	PubSub    *pubsub.Client    // the deliverers' Pub/Sub client
	Topic     string

	cancel  context.CancelFunc
	closers []func()
	wg      sync.WaitGroup
	runErr  chan error

	// Fault injection (StopPatch, StartPatch, RestartRelay) replaces the
	// patch and relay servers; mu guards them and servers.
	closeOnce    sync.Once
	mu           sync.Mutex
	servers      []*http.Server
	relay        *relay.Server
	relayCfg     relay.Config
	relaySrv     *http.Server
	patchHandler http.Handler
	patchSrv     *http.Server
}

// Start starts the product. On error everything started is stopped. The
// services are built by their production constructors (batch.New,
// patch.New, relay/service.New) from settings that Load reads out of
// Settings and the Options (settings); only clients are swapped in (the
// harness' Kubernetes identities, a Firestore interceptor).
func Start(ctx context.Context, o Options) (p *Product, err error) {
	if o.Project == "" || o.APIKube == nil || o.PatchKube == nil {
		return nil, errors.New("product: Project, APIKube and PatchKube are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 100
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p = &Product{cancel: cancel, runErr: make(chan error, 4), Topic: fconfig.DefaultTopic}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()
	lns, err := p.listen(o)
	if err != nil {
		return p, err
	}
	if err := p.startIssuer(lns["issuer"]); err != nil {
		return p, err
	}
	getenv := o.settings(p.IssuerURL, p.APIURL)
	fcfg, err := fconfig.Load(getenv)
	if err != nil {
		return p, err
	}
	acfg, err := auth.LoadConfig(getenv)
	if err != nil {
		return p, err
	}
	rcfg, err := rconfig.Load(getenv)
	if err != nil {
		return p, err
	}

	api, err := batch.New(ctx, fcfg, acfg, o.Logger, deps.WithKube(o.APIKube), deps.WithTelemetry(o.Telemetry))
	if err != nil {
		return p, fmt.Errorf("create the batch function: %w", err)
	}
	p.closers = append(p.closers, api.Close)
	api.Handler.CancelWait = o.CancelWait
	p.Store, p.Firestore = api.Deps.Store, api.Deps.Firestore
	p.serve("api", lns["api"], api.HTTP)

	patchOpts := []deps.Option{deps.WithKube(o.PatchKube), deps.WithTelemetry(o.Telemetry)}
	if o.PatchFirestore != nil {
		fc, err := interceptedFirestore(ctx, o.Project, o.PatchFirestore, o.Telemetry.GRPCDialOptions()...)
		if err != nil {
			return p, fmt.Errorf("create the patch function's Firestore client: %w", err)
		}
		p.closers = append(p.closers, func() { fc.Close() })
		patchOpts = append(patchOpts, deps.WithFirestore(fc))
	}
	ph, closePatch, err := patch.New(ctx, fcfg, o.Logger, patchOpts...)
	if err != nil {
		return p, fmt.Errorf("create the patch function: %w", err)
	}
	p.closers = append(p.closers, closePatch)
	if p.patchHandler, err = ph.Mux(runCtx); err != nil {
		return p, fmt.Errorf("create patch mux: %w", err)
	}
	p.patchSrv = p.serve("patch", lns["patch"], p.patchHandler)

	if err := p.startDeliverers(ctx, runCtx, o); err != nil {
		return p, err
	}

	rs, err := service.New(ctx, rcfg, o.Logger, service.WithKube(o.APIKube), service.WithTelemetry(o.Telemetry))
	if err != nil {
		return p, fmt.Errorf("create the relay: %w", err)
	}
	p.closers = append(p.closers, rs.Close)
	p.relay, p.relayCfg = rs.Server, rs.Relay
	p.relaySrv = p.serve("relay", lns["relay"], p.relay.Handler())
	return p, nil
}

// Settings is the environment every service of the local product reads:
// the in-process product (Start) and make run's processes
// (emulators/cmd/stack) both start from it, so they run the same settings.
// issuerURL is the development issuer's, apiURL the batch function's.
func Settings(project, issuerURL, apiURL string) map[string]string {
	return map[string]string{
		"GOOGLE_CLOUD_PROJECT":          project,
		"NODEBATCH_PROJECT":             project,
		"NODEBATCH_OIDC_ISSUER":         issuerURL,
		"NODEBATCH_OIDC_AUDIENCE":       Audience,
		"NODEBATCH_SCHEDULER_ISSUER":    issuerURL + "/google",
		"NODEBATCH_SCHEDULER_AUDIENCE":  apiURL,
		"NODEBATCH_SCHEDULER_ALLOWLIST": SchedulerAccount,
		"NODEBATCH_API_URL":             apiURL,
		"NODEBATCH_DEV_ISSUER":          "true",
	}
}

// Topology is the local Pub/Sub topology of topic: its push subscription,
// the dead-letter topic and the dead-letter subscription (Start and make
// run name them alike).
func Topology(topic string) pushdeliver.Topology {
	return pushdeliver.Topology{
		Topic:                  topic,
		Subscription:           topic + "-push",
		DeadLetterTopic:        topic + "-dead",
		DeadLetterSubscription: topic + "-dead-push",
	}
}

// settings is Settings with the Options' shape on top, as a getenv. Zero
// Options take the services' defaults (the setting is left unset); a
// negative one turns the feature off ("0").
func (o Options) settings(issuerURL, apiURL string) func(string) string {
	env := Settings(o.Project, issuerURL, apiURL)
	// The bench pushes 100 patches at once: lift the API clients' rate
	// limit above what 100 in flight can use.
	env["NODEBATCH_KUBE_QPS"], env["NODEBATCH_KUBE_BURST"] = "1000", "2000"
	// The bench follows one batch with up to 1,000 clients of one user;
	// the browser tests sign in and list nodes as one user dozens of times
	// a minute.
	env["NODEBATCH_RELAY_MAX_CONNS_PER_USER"] = "2000"
	env["NODEBATCH_NODES_PER_MINUTE"] = strconv.Itoa(localNodesPerMinute)
	env["NODEBATCH_NODES_BURST"] = strconv.Itoa(localNodesPerMinute)
	for name, v := range map[string]int{
		"NODEBATCH_INLINE_MAX":         o.InlineMax,
		"NODEBATCH_RATE_PER_MINUTE":    o.RatePerMinute,
		"NODEBATCH_RATE_BURST":         o.RateBurst,
		"NODEBATCH_PREVIEW_PER_MINUTE": o.PreviewPerMinute,
		"NODEBATCH_PREVIEW_BURST":      o.PreviewBurst,
	} {
		switch {
		case v > 0:
			env[name] = strconv.Itoa(v)
		case v < 0:
			env[name] = "0"
		}
	}
	return func(k string) string { return env[k] }
}

// listen opens the four listeners of Options' addresses and sets the
// product's URLs.
func (p *Product) listen(o Options) (map[string]net.Listener, error) {
	lns := map[string]net.Listener{}
	for name, addr := range map[string]string{"api": o.APIAddr, "patch": o.PatchAddr, "relay": o.RelayAddr, "issuer": o.IssuerAddr} {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen for %s on %s: %w", name, addr, err)
		}
		lns[name] = ln
	}
	url := func(name string) string { return "http://" + lns[name].Addr().String() }
	p.APIURL, p.PatchURL, p.RelayURL, p.IssuerURL = url("api"), url("patch"), url("relay"), url("issuer")
	return lns, nil
}

// startIssuer serves the development issuer: users at the root, a Google
// stand-in under /google.
func (p *Product) startIssuer(ln net.Listener) error {
	var err error
	if p.Issuer, err = oidcdev.New(p.IssuerURL); err != nil {
		return fmt.Errorf("create issuer: %w", err)
	}
	if p.Google, err = oidcdev.New(p.IssuerURL + "/google"); err != nil {
		return fmt.Errorf("create Google issuer: %w", err)
	}
	imux := http.NewServeMux()
	imux.Handle("/google/", p.Google.Handler())
	imux.Handle("/", p.Issuer.Handler())
	p.serve("issuer", ln, imux)
	return nil
}

// startDeliverers creates the topology and runs the push deliverer and the
// dead-letter deliverer (what make run runs as emulators/cmd/pushdeliver)
// until runCtx ends.
func (p *Product) startDeliverers(ctx, runCtx context.Context, o Options) error {
	var err error
	if p.PubSub, err = pubsub.NewClient(ctx, o.Project); err != nil {
		return fmt.Errorf("create Pub/Sub client: %w", err)
	}
	p.closers = append(p.closers, func() { p.PubSub.Close() })
	topo := Topology(p.Topic)
	if err := pushdeliver.EnsureTopology(ctx, p.PubSub, topo); err != nil {
		return fmt.Errorf("create topology: %w", err)
	}
	if p.Deliverer, err = pushdeliver.New(p.PubSub, pushdeliver.Config{
		Subscription:    topo.Subscription,
		Topic:           topo.Topic,
		Endpoint:        p.PatchURL + "/",
		DeadLetterTopic: topo.DeadLetterTopic,
		MaxInFlight:     o.MaxInFlight,
		MaxAttempts:     o.MaxAttempts,
		Duplicate:       o.Duplicate,
		Logger:          o.Logger,
	}); err != nil {
		return fmt.Errorf("create deliverer: %w", err)
	}
	dead, err := pushdeliver.New(p.PubSub, pushdeliver.Config{
		Subscription: topo.DeadLetterSubscription,
		Topic:        topo.DeadLetterTopic,
		Endpoint:     p.PatchURL + "/deadletter",
		MaxInFlight:  4,
		Logger:       o.Logger,
		BeforePush: func(ctx context.Context, _ *pubsub.Message) error {
			if o.BeforeDeadLetter == nil {
				return nil
			}
			return o.BeforeDeadLetter(ctx)
		},
	})
	if err != nil {
		return fmt.Errorf("create dead-letter deliverer: %w", err)
	}
	for _, d := range []*pushdeliver.Deliverer{p.Deliverer, dead} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := d.Run(runCtx); err != nil {
				o.Logger.Error("deliverer stopped", "error", err)
				p.runErr <- err
			}
		}()
	}
	return nil
}

// interceptedFirestore is a Firestore client of the emulator whose unary
// calls go through icpt. The client library dials the emulator itself and
// ignores dial options then, so the connection is dialled here, as the
// library does (plaintext, the emulator's "owner" bearer).
func interceptedFirestore(ctx context.Context, project string, icpt grpc.UnaryClientInterceptor, dial ...grpc.DialOption) (*firestore.Client, error) {
	addr := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if addr == "" {
		return nil, errors.New("FIRESTORE_EMULATOR_HOST is not set: Firestore faults need the emulator")
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(emulatorOwner{}),
		grpc.WithChainUnaryInterceptor(icpt)}, dial...)...)
	if err != nil {
		return nil, fmt.Errorf("dial the Firestore emulator at %s: %w", addr, err)
	}
	c, err := firestore.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// emulatorOwner is the bearer the Firestore emulator takes as the owner
// (what the client library sends it).
type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}

func (emulatorOwner) RequireTransportSecurity() bool { return false }

// localNodesPerMinute is the in-process product's per-user limit on node
// lists (and its burst): ten times the relay's default, because the browser
// tests sign in and list nodes as one user dozens of times a minute.
const localNodesPerMinute = 10 * ui.DefaultNodesPerMinute

// Token mints a user token (an admin when admin is true).
func (p *Product) Token(user string, admin bool) (string, error) {
	c := oidcdev.Claims{Subject: user, Email: user + "@example.com", Name: user, Audience: []string{Audience}, TTL: time.Hour}
	if admin {
		c.Roles = []string{"admin"}
	}
	return p.Issuer.Mint(c)
}

// SchedulerToken mints a Google-style ID token for the allowlisted
// scheduler service account, for the batch function's URL.
func (p *Product) SchedulerToken() (string, error) {
	return p.Google.Mint(oidcdev.Claims{Subject: "1234567890", Email: SchedulerAccount, Audience: []string{p.APIURL}, TTL: time.Hour})
}

// Err reports a part that stopped on its own (nil channel read blocks).
func (p *Product) Err() <-chan error { return p.runErr }

// Close stops every part: the relay first (clients are told to reconnect),
// then the deliverers, the servers and the clients. Calls after the first
// do nothing.
func (p *Product) Close() { p.closeOnce.Do(p.close) }

func (p *Product) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.mu.Lock()
	rs, servers := p.relay, slices.Clone(p.servers)
	p.mu.Unlock()
	if rs != nil {
		_ = rs.Shutdown(ctx)
	}
	p.cancel()
	p.wg.Wait()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

func (p *Product) serve(name string, ln net.Listener, h http.Handler) *http.Server {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.servers = append(p.servers, s)
	p.mu.Unlock()
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.runErr <- fmt.Errorf("serve %s: %w", name, err)
		}
	}()
	return s
}

// StopPatch kills the patch function's server the way a crash does: the
// listener and every open connection are closed at once, so requests in
// flight get no answer (the deliverer sees a transport error and retries)
// and new ones are refused until StartPatch. Handlers already running finish
// in the background, as a process killed after its writes would have left
// them.
func (p *Product) StopPatch() {
	p.mu.Lock()
	s := p.patchSrv
	p.patchSrv = nil
	p.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// StartPatch starts the patch function's server again on the same address
// after StopPatch. It is a no-op while the server runs.
func (p *Product) StartPatch() error {
	p.mu.Lock()
	running := p.patchSrv != nil
	p.mu.Unlock()
	if running {
		return nil
	}
	ln, err := listenAgain(p.PatchURL)
	if err != nil {
		return fmt.Errorf("restart patch function: %w", err)
	}
	s := p.serve("patch", ln, p.patchHandler)
	p.mu.Lock()
	p.patchSrv = s
	p.mu.Unlock()
	return nil
}

// RestartRelay restarts the relay on the same address: connected clients
// are told to reconnect (close 1012) by the old relay's Shutdown, its server
// is closed, and a new relay (fresh watchers, fresh ticket store) serves
// the same URL.
func (p *Product) RestartRelay(ctx context.Context) error {
	p.mu.Lock()
	old, oldSrv := p.relay, p.relaySrv
	p.mu.Unlock()
	if err := old.Shutdown(ctx); err != nil {
		return fmt.Errorf("restart relay: shut down: %w", err)
	}
	_ = oldSrv.Close()
	ln, err := listenAgain(p.RelayURL)
	if err != nil {
		return fmt.Errorf("restart relay: %w", err)
	}
	rs := relay.New(p.relayCfg)
	s := p.serve("relay", ln, rs.Handler())
	p.mu.Lock()
	p.relay, p.relaySrv = rs, s
	p.mu.Unlock()
	return nil
}

// listenAgain listens on the host:port of an http:// URL, retrying briefly
// while the closed listener's port is released.
func listenAgain(rawURL string) (net.Listener, error) {
	addr := strings.TrimPrefix(rawURL, "http://")
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("listen on %s: %w", addr, err)
}
