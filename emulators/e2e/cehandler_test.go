package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/nodebatch/nodebatch/functions/patch"
)

// TestPatchHandlerSurvivesCancelledRequests: the patch function's HTTP
// handler must keep answering after callers gave up on earlier requests
// (the push deliverer's request timeout, a killed connection). Pushes
// whose caller hangs up mid-request are mixed with normal ones; every
// normal push must then be answered.
//
// This is what TestFaultDuplicateDelivery ran into now and then: a push
// hung until the deliverer's 60 s timeout, again and again
// (cloudevents/sdk-go issue 1224: NewHTTPReceiveHandler pairs requests
// with consumers through one shared unbuffered channel, and a cancelled
// request's consumer leaves without taking a message).
func TestPatchHandlerSurvivesCancelledRequests(t *testing.T) {
	h, err := patch.HTTPHandler(t.Context(), func(ctx context.Context, e event.Event) error {
		if strings.HasPrefix(e.ID(), "slow") {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	hung := 0
	t.Cleanup(func() {
		if hung == 0 { // a wedged handler never returns: Close would wait forever
			srv.Close()
		}
	})
	push := func(ctx context.Context, id string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{}`))
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-id", id)
		req.Header.Set("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
		req.Header.Set("ce-source", "//pubsub.googleapis.com/projects/p/topics/t")
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := func(err error) {
		if errors.Is(err, context.DeadlineExceeded) {
			mu.Lock()
			hung++
			mu.Unlock()
		}
	}
	for round := range 20 {
		for i := range 8 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(1+i)*time.Millisecond)
				defer cancel()
				_ = push(ctx, fmt.Sprintf("slow-%d-%d", round, i)) // gives up mid-request
			})
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				answered(push(ctx, fmt.Sprintf("fast-%d-%d", round, i)))
			})
		}
		wg.Wait()
	}
	if hung > 0 {
		t.Errorf("%d of 160 pushes got no answer within 5 s while other callers cancelled theirs: the handler wedges", hung)
	}
}
