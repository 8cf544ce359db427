package pushdeliver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Topology names the Pub/Sub resources one push pipeline needs. Names may be
// IDs (in the client's project) or fully qualified.
type Topology struct {
	// Topic is where events are published.
	Topic string
	// Subscription is the ordered subscription the deliverer pulls from.
	Subscription string
	// DeadLetterTopic receives messages the deliverer gave up on. Optional.
	DeadLetterTopic string
	// DeadLetterSubscription keeps dead-lettered messages (a topic with no
	// subscription drops what is published to it). Optional; only used
	// with DeadLetterTopic.
	DeadLetterSubscription string
	// AckDeadline of the subscriptions; 0 means 60 s. The deliverer extends
	// it while it retries, so it only bounds how soon a crashed deliverer's
	// messages come back.
	AckDeadline time.Duration
}

// EnsureTopology creates whatever of t does not exist yet: the topic, the
// subscription with message ordering on, and the dead-letter topic and
// subscription. The subscription gets NO dead-letter policy: the emulator
// loses messages when one is combined with ordering, so the deliverer
// dead-letters itself. An existing subscription without ordering is an error.
func EnsureTopology(ctx context.Context, client *pubsub.Client, t Topology) error {
	if t.Topic == "" || t.Subscription == "" {
		return fmt.Errorf("ensure topology: topic and subscription are required")
	}
	project := client.Project()
	ack := int32(60)
	if t.AckDeadline > 0 {
		ack = int32(t.AckDeadline / time.Second)
	}
	topic := fullName(project, "topics", t.Topic)
	if err := ensureTopic(ctx, client, topic); err != nil {
		return err
	}
	sub := fullName(project, "subscriptions", t.Subscription)
	if err := ensureSubscription(ctx, client, &pubsubpb.Subscription{
		Name: sub, Topic: topic, AckDeadlineSeconds: ack, EnableMessageOrdering: true,
	}); err != nil {
		return err
	}
	if t.DeadLetterTopic == "" {
		return nil
	}
	dlt := fullName(project, "topics", t.DeadLetterTopic)
	if err := ensureTopic(ctx, client, dlt); err != nil {
		return err
	}
	if t.DeadLetterSubscription == "" {
		return nil
	}
	return ensureSubscription(ctx, client, &pubsubpb.Subscription{
		Name:               fullName(project, "subscriptions", t.DeadLetterSubscription),
		Topic:              dlt,
		AckDeadlineSeconds: ack, EnableMessageOrdering: true,
	})
}

func ensureTopic(ctx context.Context, client *pubsub.Client, name string) error {
	_, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	return nil
}

func ensureSubscription(ctx context.Context, client *pubsub.Client, want *pubsubpb.Subscription) error {
	_, err := client.SubscriptionAdminClient.CreateSubscription(ctx, want)
	if err == nil {
		return nil
	}
	if status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create subscription %s: %w", want.Name, err)
	}
	got, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: want.Name})
	if err != nil {
		return fmt.Errorf("get subscription %s: %w", want.Name, err)
	}
	if got.GetTopic() != want.Topic || got.GetEnableMessageOrdering() != want.EnableMessageOrdering {
		return fmt.Errorf("ensure subscription %s: exists with topic %s ordering %t, want topic %s ordering %t",
			want.Name, got.GetTopic(), got.GetEnableMessageOrdering(), want.Topic, want.EnableMessageOrdering)
	}
	return nil
}

// fullName qualifies an ID as projects/P/{kind}/ID; full names pass through.
func fullName(project, kind, nameOrID string) string {
	if strings.HasPrefix(nameOrID, "projects/") {
		return nameOrID
	}
	return "projects/" + project + "/" + kind + "/" + nameOrID
}

// projectOf returns P from projects/P/….
func projectOf(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) >= 2 && parts[0] == "projects" {
		return parts[1]
	}
	return ""
}

// lastSegment returns the ID at the end of a full name.
func lastSegment(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}
