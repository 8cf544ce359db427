// Package pushdeliver is the local stand-in for a Pub/Sub push subscription
// (or an Eventarc trigger): it pulls from a Pub/Sub emulator subscription and
// POSTs each message to an HTTP endpoint as the cloud would.
//
// The emulator's own push is unusable for nodebatch: it sends two requests at
// a time, drops the ordering key, and loses messages when ordering meets a
// dead-letter policy. A nacked ordered message also comes back after the
// later messages of its key. So the deliverer retries a failed push itself
// (with backoff, while the client library extends the ack deadline) and
// dead-letters by publishing to the dead-letter topic, keeping every key in
// order with at most one push in flight per key.
package pushdeliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// Attributes Pub/Sub adds to a message it forwards to a dead-letter topic.
const (
	AttrDeliveryCount        = "CloudPubSubDeadLetterSourceDeliveryCount"
	AttrSourceSubscription   = "CloudPubSubDeadLetterSourceSubscription"
	AttrSourceProject        = "CloudPubSubDeadLetterSourceSubscriptionProject"
	AttrSourcePublishTime    = "CloudPubSubDeadLetterSourceTopicPublishTime"
	defaultMaxInFlight       = 20
	defaultMaxAttempts       = 5
	defaultMinBackoff        = 100 * time.Millisecond
	defaultMaxBackoff        = 10 * time.Second
	defaultRequestTimeout    = 60 * time.Second
	defaultMaxExtension      = 60 * time.Minute
	defaultPrefetchPerFlight = 50
)

// Config says where to pull from, where to push to, and how.
type Config struct {
	// Subscription to pull from: an ID in the client's project or a full name.
	Subscription string
	// Topic of the subscription, for the CloudEvent source. Empty: looked up.
	Topic string
	// Endpoint is the URL every message is POSTed to.
	Endpoint string
	// Format of the request; the zero value is FormatCloudEvent.
	Format Format
	// DeadLetterTopic receives a message after MaxAttempts failed pushes.
	// Empty: like Pub/Sub without a dead-letter policy, retry forever.
	DeadLetterTopic string
	// MaxInFlight caps concurrent push requests over all keys (default 20).
	MaxInFlight int
	// Prefetch caps messages held unacknowledged by the client library
	// (default 50 × MaxInFlight). Messages queued behind a slow key count.
	Prefetch int
	// MaxAttempts is how many pushes a message gets before it is
	// dead-lettered (default 5, as Pub/Sub's minimum is 5).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential delay between
	// attempts (defaults 100 ms and 10 s; Pub/Sub push uses 10 s and 600 s).
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one push request (default 60 s).
	RequestTimeout time.Duration
	// MaxExtension is how long the ack deadline is extended while a message
	// is being pushed and retried (default 60 min).
	MaxExtension time.Duration
	// Token, when set, returns a bearer token for each request (Cloud push
	// sends an OIDC token in Authorization).
	Token func(ctx context.Context) (string, error)
	// Duplicate pushes every message twice (both must succeed), to test
	// receivers against at-least-once delivery.
	Duplicate bool
	// HTTPClient sends the requests. Default: one with enough idle
	// connections per host for MaxInFlight.
	HTTPClient *http.Client
	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger
	// BeforePush, if set, is called before every push of a message (before
	// it takes an in-flight slot) and may block: a test holds, for
	// example, the dead-letter pushes until it has done what it must do
	// first. An error counts as a failed push.
	BeforePush func(ctx context.Context, m *pubsub.Message) error
}

// Stats counts what the deliverer did since it was created.
type Stats struct {
	// Delivered counts messages acknowledged after a 2xx push.
	Delivered int64
	// Duplicates counts extra 2xx pushes made because of Config.Duplicate.
	Duplicates int64
	// Retried counts failed pushes that were tried again.
	Retried int64
	// DeadLettered counts messages published to the dead-letter topic.
	DeadLettered int64
	// Nacked counts messages handed back to Pub/Sub (shutdown, or a failed
	// dead-letter publish).
	Nacked int64
}

// Deliverer pulls from one subscription and pushes to one endpoint.
type Deliverer struct {
	client *pubsub.Client
	cfg    Config
	log    *slog.Logger
	sem    chan struct{}
	keys   keyLocks

	delivered, duplicates, retried, deadLettered, nacked atomic.Int64
}

// New checks cfg, fills in defaults and returns a Deliverer that uses client.
func New(client *pubsub.Client, cfg Config) (*Deliverer, error) {
	if cfg.Subscription == "" || cfg.Endpoint == "" {
		return nil, errors.New("new push deliverer: subscription and endpoint are required")
	}
	if cfg.Format != FormatCloudEvent && cfg.Format != FormatPushEnvelope {
		return nil, fmt.Errorf("new push deliverer: unknown format %v", cfg.Format)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxInFlight, defaultMaxInFlight)
	def(&cfg.Prefetch, defaultPrefetchPerFlight*cfg.MaxInFlight)
	def(&cfg.MaxAttempts, defaultMaxAttempts)
	defD(&cfg.MinBackoff, defaultMinBackoff)
	defD(&cfg.MaxBackoff, defaultMaxBackoff)
	defD(&cfg.RequestTimeout, defaultRequestTimeout)
	defD(&cfg.MaxExtension, defaultMaxExtension)
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.MaxInFlight
		tr.MaxIdleConns = 2 * cfg.MaxInFlight
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	project := client.Project()
	cfg.Subscription = fullName(project, "subscriptions", cfg.Subscription)
	if cfg.Topic != "" {
		cfg.Topic = fullName(project, "topics", cfg.Topic)
	}
	if cfg.DeadLetterTopic != "" {
		cfg.DeadLetterTopic = fullName(project, "topics", cfg.DeadLetterTopic)
	}
	return &Deliverer{
		client: client,
		cfg:    cfg,
		log:    cfg.Logger.With("subscription", cfg.Subscription, "endpoint", cfg.Endpoint),
		sem:    make(chan struct{}, cfg.MaxInFlight),
	}, nil
}

// Stats returns a snapshot of the counters.
func (d *Deliverer) Stats() Stats {
	return Stats{
		Delivered:    d.delivered.Load(),
		Duplicates:   d.duplicates.Load(),
		Retried:      d.retried.Load(),
		DeadLettered: d.deadLettered.Load(),
		Nacked:       d.nacked.Load(),
	}
}

// Run delivers until ctx is done or pulling fails for good. On cancel it
// stops pulling; pushes already sent finish (and are acked on 2xx), messages
// not yet pushed or waiting for a retry are nacked. It returns nil after a
// cancel.
func (d *Deliverer) Run(ctx context.Context) error {
	sub, err := d.client.SubscriptionAdminClient.GetSubscription(ctx,
		&pubsubpb.GetSubscriptionRequest{Subscription: d.cfg.Subscription})
	if err != nil {
		if ctx.Err() != nil {
			return nil // cancelled before it started
		}
		return fmt.Errorf("push deliverer: get subscription %s: %w", d.cfg.Subscription, err)
	}
	if !sub.GetEnableMessageOrdering() {
		d.log.Warn("subscription has message ordering off: one push per key at a time, but keys are not kept in order")
	}
	tg := target{endpoint: d.cfg.Endpoint, topic: d.cfg.Topic, subscription: d.cfg.Subscription}
	if tg.topic == "" {
		tg.topic = sub.GetTopic()
	}
	var dlt *pubsub.Publisher
	if d.cfg.DeadLetterTopic != "" {
		dlt = d.client.Publisher(d.cfg.DeadLetterTopic)
		dlt.EnableMessageOrdering = true
		defer dlt.Stop()
	}
	s := d.client.Subscriber(d.cfg.Subscription)
	s.ReceiveSettings.MaxOutstandingMessages = d.cfg.Prefetch
	s.ReceiveSettings.MaxExtension = d.cfg.MaxExtension
	s.ReceiveSettings.NumGoroutines = 1
	d.log.Info("push deliverer started", "topic", tg.topic, "max_in_flight", d.cfg.MaxInFlight,
		"max_attempts", d.cfg.MaxAttempts, "dead_letter_topic", d.cfg.DeadLetterTopic,
		"format", d.cfg.Format.String(), "duplicate", d.cfg.Duplicate)
	err = s.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		d.handle(ctx, tg, dlt, m)
	})
	if err != nil {
		return fmt.Errorf("push deliverer: receive from %s: %w", d.cfg.Subscription, err)
	}
	d.log.Info("push deliverer stopped", "stats", d.Stats())
	return nil
}

// handle owns one message until it is acked or nacked.
func (d *Deliverer) handle(ctx context.Context, tg target, dlt *pubsub.Publisher, m *pubsub.Message) {
	unlock := d.keys.lock(m.OrderingKey)
	defer unlock()
	log := d.log.With("message_id", m.ID, "ordering_key", m.OrderingKey)
	for attempt := 1; ; attempt++ {
		err := d.pushAll(ctx, tg, m, attempt)
		if err == nil {
			m.Ack()
			d.delivered.Add(1)
			log.Debug("push delivered", "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			m.Nack()
			d.nacked.Add(1)
			log.Info("push abandoned on shutdown, nacked", "attempt", attempt, "error", err)
			return
		}
		if dlt != nil && attempt >= d.cfg.MaxAttempts {
			d.deadLetter(ctx, dlt, m, attempt, log)
			return
		}
		wait := d.backoff(attempt)
		d.retried.Add(1)
		log.Warn("push failed, will retry", "attempt", attempt, "backoff", wait.String(), "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			m.Nack()
			d.nacked.Add(1)
			log.Info("retry abandoned on shutdown, nacked", "attempt", attempt)
			return
		case <-t.C:
		}
	}
}

// pushAll pushes m once, or twice with Config.Duplicate.
func (d *Deliverer) pushAll(ctx context.Context, tg target, m *pubsub.Message, attempt int) error {
	if err := d.push(ctx, tg, m, attempt); err != nil {
		return err
	}
	if !d.cfg.Duplicate {
		return nil
	}
	if err := d.push(ctx, tg, m, attempt); err != nil {
		return fmt.Errorf("duplicate push: %w", err)
	}
	d.duplicates.Add(1)
	return nil
}

// push sends one request while holding a global in-flight slot. A request
// once sent is not cancelled by ctx: shutdown lets it finish.
func (d *Deliverer) push(ctx context.Context, tg target, m *pubsub.Message, attempt int) error {
	if err := ctx.Err(); err != nil { // select below picks at random when both are ready
		return fmt.Errorf("push message %s: %w", m.ID, err)
	}
	if d.cfg.BeforePush != nil {
		if err := d.cfg.BeforePush(ctx, m); err != nil {
			return fmt.Errorf("push message %s: before push: %w", m.ID, err)
		}
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for an in-flight slot: %w", ctx.Err())
	}
	defer func() { <-d.sem }()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.RequestTimeout)
	defer cancel()
	req, err := newRequest(rctx, d.cfg.Format, tg, m, attempt)
	if err != nil {
		return err
	}
	if d.cfg.Token != nil {
		tok, err := d.cfg.Token(rctx)
		if err != nil {
			return fmt.Errorf("get push token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("push message %s: %w", m.ID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection is reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("push message %s: %s: %q", m.ID, resp.Status, body)
	}
	return nil
}

// backoff is exponential from MinBackoff, capped at MaxBackoff, with the
// upper half jittered so that failing keys do not retry in lockstep.
func (d *Deliverer) backoff(attempt int) time.Duration {
	w := d.cfg.MinBackoff
	for i := 1; i < attempt && w < d.cfg.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.cfg.MaxBackoff)
	half := w / 2
	return half + rand.N(half+1)
}

// deadLetter publishes m to the dead-letter topic as Pub/Sub would, then
// acks it so its key moves on. If the publish fails m is nacked: Pub/Sub will
// deliver it again (after the later messages of its key, on the emulator).
func (d *Deliverer) deadLetter(ctx context.Context, dlt *pubsub.Publisher, m *pubsub.Message, attempts int, log *slog.Logger) {
	attrs := make(map[string]string, len(m.Attributes)+4)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs[AttrDeliveryCount] = strconv.Itoa(attempts)
	attrs[AttrSourceSubscription] = lastSegment(d.cfg.Subscription)
	attrs[AttrSourceProject] = projectOf(d.cfg.Subscription)
	attrs[AttrSourcePublishTime] = formatTime(m.PublishTime)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.RequestTimeout)
	defer cancel()
	res := dlt.Publish(pctx, &pubsub.Message{Data: m.Data, Attributes: attrs, OrderingKey: m.OrderingKey})
	id, err := res.Get(pctx)
	if err != nil {
		if m.OrderingKey != "" {
			dlt.ResumePublish(m.OrderingKey)
		}
		m.Nack()
		d.nacked.Add(1)
		log.Error("dead-letter publish failed, nacked", "attempts", attempts, "error", err)
		return
	}
	m.Ack()
	d.deadLettered.Add(1)
	log.Warn("push gave up, message dead-lettered", "attempts", attempts,
		"dead_letter_topic", d.cfg.DeadLetterTopic, "dead_letter_message_id", id)
}
