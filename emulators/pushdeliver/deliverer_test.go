package pushdeliver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/pushdeliver"
	"github.com/nodebatch/nodebatch/emulators/wait"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// waitLimit bounds every wait so a broken deliverer fails instead of hanging.
// It is a deadline, not a timing assertion.
const waitLimit = 90 * time.Second

// rig is one isolated topology on the real Pub/Sub emulator.
type rig struct {
	project string
	client  *pubsub.Client
	topo    pushdeliver.Topology
	pub     *pubsub.Publisher
}

func newRig(t testing.TB) *rig {
	t.Helper()
	env := harness.Start(t)
	project := env.ProjectID(t)
	client := env.PubSub(t, project)
	topo := pushdeliver.Topology{
		Topic: "events", Subscription: "events-push",
		DeadLetterTopic: "events-dead", DeadLetterSubscription: "events-dead-pull",
	}
	ctx := context.Background()
	if err := pushdeliver.EnsureTopology(ctx, client, topo); err != nil {
		t.Fatalf("EnsureTopology: %v", err)
	}
	// A second call finds everything in place.
	if err := pushdeliver.EnsureTopology(ctx, client, topo); err != nil {
		t.Fatalf("EnsureTopology again: %v", err)
	}
	pub := client.Publisher(topo.Topic)
	pub.EnableMessageOrdering = true
	t.Cleanup(pub.Stop)
	return &rig{project: project, client: client, topo: topo, pub: pub}
}

// msg is what a test publishes.
type msg struct {
	key, data string
	attrs     map[string]string
}

// publish publishes msgs (in order per key) and returns their message IDs.
func (r *rig) publish(t testing.TB, msgs []msg) []string {
	t.Helper()
	ctx := context.Background()
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = r.pub.Publish(ctx, &pubsub.Message{Data: []byte(m.data), Attributes: m.attrs, OrderingKey: m.key})
	}
	ids := make([]string, len(msgs))
	for i, res := range results {
		id, err := res.Get(ctx)
		if err != nil {
			t.Fatalf("publish %q: %v", msgs[i].data, err)
		}
		ids[i] = id
	}
	return ids
}

// run starts a deliverer with cfg (subscription and dead-letter topic filled
// in) and stops it on cleanup, failing if Run returns an error. stop cancels
// Run and waits for it to return; cancel only cancels.
func (r *rig) run(t testing.TB, cfg pushdeliver.Config) (d *pushdeliver.Deliverer, cancel, stop func()) {
	t.Helper()
	cfg.Subscription = r.topo.Subscription
	if cfg.DeadLetterTopic == "" {
		cfg.DeadLetterTopic = r.topo.DeadLetterTopic
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := pushdeliver.New(r.client, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return within %v of cancel", waitLimit)
		}
	}
	t.Cleanup(stop)
	return d, cancel, stop
}

// received is one request as the endpoint saw it.
type received struct {
	data, key, id, auth string
	publishTime         string
	attrs               map[string]string
}

// endpoint is an httptest server that decodes each push as a CloudEvent and
// records concurrency globally and per ordering key.
type endpoint struct {
	*httptest.Server
	sleep time.Duration
	// status decides the response to the n-th attempt (from 1) at data.
	status func(data string, n int) int

	mu                    sync.Mutex
	inFlight, maxInFlight int
	keyInFlight           map[string]int
	maxKeyInFlight        int
	attempts              map[string]int
	ok                    []received // 2xx answers, in order
	errs                  []string
}

func newEndpoint(t testing.TB, sleep time.Duration, status func(data string, n int) int) *endpoint {
	t.Helper()
	e := &endpoint{sleep: sleep, status: status, keyInFlight: map[string]int{}, attempts: map[string]int{}}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		e.fail(w, fmt.Sprintf("decode CloudEvent: %v", err))
		return
	}
	var data pushdeliver.MessagePublishedData
	if err := ev.DataAs(&data); err != nil {
		e.fail(w, fmt.Sprintf("decode MessagePublishedData: %v", err))
		return
	}
	key := data.Message.OrderingKey
	e.mu.Lock()
	e.inFlight++
	e.maxInFlight = max(e.maxInFlight, e.inFlight)
	e.keyInFlight[key]++
	e.maxKeyInFlight = max(e.maxKeyInFlight, e.keyInFlight[key])
	e.attempts[string(data.Message.Data)]++
	n := e.attempts[string(data.Message.Data)]
	e.mu.Unlock()

	time.Sleep(e.sleep)
	code := http.StatusNoContent
	if e.status != nil {
		code = e.status(string(data.Message.Data), n)
	}

	e.mu.Lock()
	e.inFlight--
	e.keyInFlight[key]--
	if code/100 == 2 {
		e.ok = append(e.ok, received{
			data: string(data.Message.Data), key: key, id: ev.ID(), auth: r.Header.Get("Authorization"),
			publishTime: data.Message.PublishTime, attrs: data.Message.Attributes,
		})
	}
	e.mu.Unlock()
	w.WriteHeader(code)
}

func (e *endpoint) fail(w http.ResponseWriter, why string) {
	e.mu.Lock()
	e.errs = append(e.errs, why)
	e.mu.Unlock()
	http.Error(w, why, http.StatusBadRequest)
}

// waitOK waits until the endpoint has answered 2xx n times and returns those.
func (e *endpoint) waitOK(t testing.TB, n int) []received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var got []received
	wait.For(ctx, t, fmt.Sprintf("the endpoint to answer 2xx %d times", n), func() error {
		e.mu.Lock()
		var errs []string
		got, errs = slices.Clone(e.ok), slices.Clone(e.errs)
		e.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("endpoint rejected requests: %q", errs)
		}
		return wait.True(len(got) >= n, "answered %d times", len(got))
	})
	return got
}

// byKey groups the data of received messages by ordering key, in order.
func byKey(got []received) map[string][]string {
	m := map[string][]string{}
	for _, r := range got {
		m[r.key] = append(m[r.key], r.data)
	}
	return m
}

// keyedMessages returns keys × perKey messages "k{key}-{seq}", interleaved
// across keys as a batch publisher would.
func keyedMessages(keys, perKey int) ([]msg, map[string][]string) {
	var msgs []msg
	want := map[string][]string{}
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("batch/%d", k)
			data := fmt.Sprintf("k%d-%03d", k, seq)
			msgs = append(msgs, msg{key: key, data: data})
			want[key] = append(want[key], data)
		}
	}
	return msgs, want
}

func TestDeliverConcurrencyAndOrder(t *testing.T) {
	r := newRig(t)
	const keys, perKey, maxInFlight = 30, 10, 20
	msgs, want := keyedMessages(keys, perKey)
	r.publish(t, msgs)
	ep := newEndpoint(t, 15*time.Millisecond, nil)
	d, _, stop := r.run(t, pushdeliver.Config{Endpoint: ep.URL, MaxInFlight: maxInFlight})

	got := ep.waitOK(t, len(msgs))
	stop()
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("messages by ordering key (-want +got):\n%s", diff)
	}
	ep.mu.Lock()
	maxKey, maxAll := ep.maxKeyInFlight, ep.maxInFlight
	ep.mu.Unlock()
	if maxKey != 1 {
		t.Errorf("max in flight per ordering key = %d, want 1", maxKey)
	}
	if maxAll != maxInFlight {
		t.Errorf("max in flight over all keys = %d, want %d (the cap, reached with %d keys)", maxAll, maxInFlight, keys)
	}
	if diff := cmp.Diff(pushdeliver.Stats{Delivered: int64(len(msgs))}, d.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestDeliverCloudEventShape(t *testing.T) {
	r := newRig(t)
	attrs := map[string]string{"ce-type": "dev.nodebatch.node.patch.v1", "ce-id": "b1/a1/n-0"}
	ids := r.publish(t, []msg{{key: "b1/0", data: `{"node":"n-0"}`, attrs: attrs}})
	ep := newEndpoint(t, 0, nil)
	_, _, _ = r.run(t, pushdeliver.Config{
		Endpoint: ep.URL,
		Token:    func(context.Context) (string, error) { return "test-token", nil },
	})
	got := ep.waitOK(t, 1)
	if _, err := time.Parse(time.RFC3339Nano, got[0].publishTime); err != nil {
		t.Errorf("publishTime %q is not RFC 3339: %v", got[0].publishTime, err)
	}
	want := []received{{
		data: `{"node":"n-0"}`, key: "b1/0", id: ids[0], auth: "Bearer test-token",
		publishTime: got[0].publishTime, attrs: attrs,
	}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(received{})); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
}

func TestDeliverDeadLetter(t *testing.T) {
	r := newRig(t)
	const maxAttempts = 3
	msgs := []msg{
		{key: "a", data: "a0"},
		{key: "a", data: "a1-poison", attrs: map[string]string{"why": "always fails"}},
		{key: "a", data: "a2"},
		{key: "b", data: "b0"},
		{key: "b", data: "b1"},
		{key: "b", data: "b2"},
	}
	ids := r.publish(t, msgs)
	ep := newEndpoint(t, 0, func(data string, _ int) int {
		if data == "a1-poison" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	d, _, stop := r.run(t, pushdeliver.Config{
		Endpoint: ep.URL, MaxAttempts: maxAttempts,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	})

	// The poison message goes to the dead-letter topic, with the attributes
	// Pub/Sub adds and its ordering key.
	dead := pullOne(t, r.client, r.topo.DeadLetterSubscription)
	got := ep.waitOK(t, 5)
	stop()
	wantByKey := map[string][]string{"a": {"a0", "a2"}, "b": {"b0", "b1", "b2"}}
	if diff := cmp.Diff(wantByKey, byKey(got)); diff != "" {
		t.Errorf("delivered by key (-want +got):\n%s", diff)
	}
	ep.mu.Lock()
	poisonAttempts := ep.attempts["a1-poison"]
	ep.mu.Unlock()
	if poisonAttempts != maxAttempts {
		t.Errorf("attempts at the poison message = %d, want %d", poisonAttempts, maxAttempts)
	}
	wantDead := deadMessage{
		id: dead.id, data: "a1-poison", key: "a",
		attrs: map[string]string{
			"why":                              "always fails",
			pushdeliver.AttrDeliveryCount:      strconv.Itoa(maxAttempts),
			pushdeliver.AttrSourceSubscription: r.topo.Subscription,
			pushdeliver.AttrSourceProject:      r.project,
			pushdeliver.AttrSourcePublishTime:  dead.attrs[pushdeliver.AttrSourcePublishTime],
		},
	}
	if diff := cmp.Diff(wantDead, dead, cmp.AllowUnexported(deadMessage{})); diff != "" {
		t.Errorf("dead-lettered message (-want +got):\n%s", diff)
	}
	if dead.id == ids[1] {
		t.Errorf("dead-lettered message kept id %s; want a new message on the dead-letter topic", dead.id)
	}
	if _, err := time.Parse(time.RFC3339Nano, wantDead.attrs[pushdeliver.AttrSourcePublishTime]); err != nil {
		t.Errorf("%s = %q, not RFC 3339: %v", pushdeliver.AttrSourcePublishTime, wantDead.attrs[pushdeliver.AttrSourcePublishTime], err)
	}
	wantStats := pushdeliver.Stats{Delivered: 5, Retried: maxAttempts - 1, DeadLettered: 1}
	if diff := cmp.Diff(wantStats, d.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// deadMessage is a message read from the dead-letter subscription.
type deadMessage struct {
	id, data, key string
	attrs         map[string]string
}

func pullOne(t *testing.T, client *pubsub.Client, sub string) deadMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var (
		once sync.Once
		got  deadMessage
	)
	err := client.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		once.Do(func() {
			got = deadMessage{id: m.ID, data: string(m.Data), key: m.OrderingKey, attrs: m.Attributes}
			cancel()
		})
	})
	if err != nil {
		t.Fatalf("receive from %s: %v", sub, err)
	}
	if got.data == "" {
		t.Fatalf("no message on %s within %v", sub, waitLimit)
	}
	return got
}

func TestDeliverRetriesThenSucceeds(t *testing.T) {
	r := newRig(t)
	const failures = 3
	msgs, want := keyedMessages(3, 4)
	r.publish(t, msgs)
	ep := newEndpoint(t, 0, func(_ string, n int) int {
		if n <= failures {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	d, _, stop := r.run(t, pushdeliver.Config{
		Endpoint: ep.URL, MaxAttempts: failures + 2,
		MinBackoff: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
	})
	got := ep.waitOK(t, len(msgs))
	stop()
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("delivered by key (-want +got):\n%s", diff)
	}
	wantAttempts := map[string]int{}
	for _, m := range msgs {
		wantAttempts[m.data] = failures + 1
	}
	ep.mu.Lock()
	gotAttempts := ep.attempts
	ep.mu.Unlock()
	if diff := cmp.Diff(wantAttempts, gotAttempts); diff != "" {
		t.Errorf("attempts per message (-want +got):\n%s", diff)
	}
	wantStats := pushdeliver.Stats{Delivered: int64(len(msgs)), Retried: int64(failures * len(msgs))}
	if diff := cmp.Diff(wantStats, d.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestDeliverDuplicate(t *testing.T) {
	r := newRig(t)
	msgs, _ := keyedMessages(2, 3)
	r.publish(t, msgs)
	ep := newEndpoint(t, 0, nil)
	d, _, stop := r.run(t, pushdeliver.Config{Endpoint: ep.URL, Duplicate: true})
	got := ep.waitOK(t, 2*len(msgs))
	stop()
	want := map[string][]string{
		"batch/0": {"k0-000", "k0-000", "k0-001", "k0-001", "k0-002", "k0-002"},
		"batch/1": {"k1-000", "k1-000", "k1-001", "k1-001", "k1-002", "k1-002"},
	}
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("delivered by key (-want +got):\n%s", diff)
	}
	wantStats := pushdeliver.Stats{Delivered: int64(len(msgs)), Duplicates: int64(len(msgs))}
	if diff := cmp.Diff(wantStats, d.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestDeliverShutdown(t *testing.T) {
	r := newRig(t)
	msgs := []msg{{key: "k", data: "m0"}, {key: "k", data: "m1"}, {key: "k", data: "m2"}, {key: "k", data: "m3"}}
	r.publish(t, msgs)

	// The first push blocks until the deliverer has been told to stop: it
	// must finish (and be acked), and nothing after it may be pushed.
	entered, release := make(chan struct{}), make(chan struct{})
	ep := newEndpoint(t, 0, func(data string, _ int) int {
		if data == "m0" {
			close(entered)
			<-release
		}
		return http.StatusOK
	})
	d, cancel, stop := r.run(t, pushdeliver.Config{Endpoint: ep.URL})
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatalf("first push not received within %v", waitLimit)
	}
	// Cancellation reaches the callbacks' contexts synchronously, so once
	// cancel returns nothing new may be pushed.
	cancel()
	close(release)
	stop()
	got := ep.waitOK(t, 1)
	if diff := cmp.Diff([]string{"m0"}, byKey(got)["k"]); diff != "" {
		t.Errorf("pushed before shutdown (-want +got):\n%s", diff)
	}
	if s := d.Stats(); s.Delivered != 1 {
		t.Errorf("Stats().Delivered = %d, want 1 (the in-flight push finished and was acked)", s.Delivered)
	}

	// A new deliverer gets the rest, and not the acked one.
	ep2 := newEndpoint(t, 0, nil)
	_, _, _ = r.run(t, pushdeliver.Config{Endpoint: ep2.URL})
	rest := byKey(ep2.waitOK(t, 3))["k"]
	slices.Sort(rest)
	if diff := cmp.Diff([]string{"m1", "m2", "m3"}, rest); diff != "" {
		t.Errorf("delivered after restart (-want +got):\n%s", diff)
	}
}

func TestEnsureTopologyRejectsForeignSubscription(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// An existing subscription of another topic must not be taken as ours.
	err := pushdeliver.EnsureTopology(ctx, r.client, pushdeliver.Topology{Topic: "other", Subscription: r.topo.Subscription})
	if err == nil {
		t.Fatalf("EnsureTopology with a subscription of another topic = nil, want an error")
	}
}

// BenchmarkDeliver measures end-to-end push throughput on the emulator:
// 2,000 messages over 50 ordering keys, each push taking 20 ms.
func BenchmarkDeliver(b *testing.B) {
	for _, inFlight := range []int{20, 50} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				r := newRig(b)
				msgs, _ := keyedMessages(50, 40)
				r.publish(b, msgs)
				ep := newEndpoint(b, 20*time.Millisecond, nil)
				start := time.Now()
				b.StartTimer()
				_, _, stop := r.run(b, pushdeliver.Config{Endpoint: ep.URL, MaxInFlight: inFlight})
				ep.waitOK(b, len(msgs))
				b.StopTimer()
				total += time.Since(start)
				stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(2000*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

// TestDeliverBeforePushHolds: BeforePush is asked before every push and may
// hold it: nothing reaches the endpoint until it lets go, then everything
// does; an error counts as a failed push and is retried.
func TestDeliverBeforePushHolds(t *testing.T) {
	r := newRig(t)
	msgs, want := keyedMessages(2, 2)
	r.publish(t, msgs)
	ep := newEndpoint(t, 0, nil)
	release := make(chan struct{})
	var asked, refused atomic.Int64
	d, _, stop := r.run(t, pushdeliver.Config{
		Endpoint: ep.URL, MaxAttempts: 5, MinBackoff: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		BeforePush: func(ctx context.Context, m *pubsub.Message) error {
			if asked.Add(1) == 1 {
				refused.Add(1)
				return errors.New("not yet")
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	// One refused, both keys' next pushes held.
	wait.For(wctx, t, "BeforePush to be asked 3 times", func() error {
		return wait.True(asked.Load() >= 3, "asked %d times", asked.Load())
	})
	ep.mu.Lock()
	early := len(ep.ok)
	ep.mu.Unlock()
	if early != 0 {
		t.Errorf("%d pushes reached the endpoint while BeforePush held them", early)
	}
	close(release)
	got := ep.waitOK(t, len(msgs))
	stop()
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("delivered by key (-want +got):\n%s", diff)
	}
	if st := d.Stats(); st.Retried != refused.Load() || st.Delivered != int64(len(msgs)) {
		t.Errorf("Stats = %+v, want %d retried (the refused push), %d delivered", st, refused.Load(), len(msgs))
	}
}
