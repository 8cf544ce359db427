package batch

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
)

// Publisher publishes messages and waits until every one is accepted or
// refused.
type Publisher interface {
	Publish(ctx context.Context, msgs []*pubsub.Message) error
}

// TopicPublisher publishes to one Pub/Sub topic with message ordering on, so
// a lane's ordering key keeps its events in order.
type TopicPublisher struct {
	p *pubsub.Publisher
}

// NewTopicPublisher returns a publisher for topic (a name or a full
// "projects/P/topics/T"). Stop it with Stop.
func NewTopicPublisher(client *pubsub.Client, topic string) *TopicPublisher {
	p := client.Publisher(topic)
	p.EnableMessageOrdering = true
	return &TopicPublisher{p: p}
}

// Publish publishes msgs concurrently (the client batches them) and waits for
// every result. After a failure on an ordering key the client refuses the
// rest of that key; the key is resumed so later batches are not blocked.
func (t *TopicPublisher) Publish(ctx context.Context, msgs []*pubsub.Message) error {
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = t.p.Publish(ctx, m)
	}
	var errs []error
	failedKeys := map[string]bool{}
	for i, r := range results {
		if _, err := r.Get(ctx); err != nil {
			if len(errs) < 5 {
				errs = append(errs, fmt.Errorf("message %d (key %s): %w", i, msgs[i].OrderingKey, err))
			}
			failedKeys[msgs[i].OrderingKey] = true
		}
	}
	for k := range failedKeys {
		t.p.ResumePublish(k)
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish %d messages: %d keys failed: %w", len(msgs), len(failedKeys), errors.Join(errs...))
	}
	return nil
}

// Stop flushes and stops the publisher.
func (t *TopicPublisher) Stop() { t.p.Stop() }
