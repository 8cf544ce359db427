// Command pushdeliver stands in for a Pub/Sub push subscription on the
// local stack: it pulls from a Pub/Sub emulator subscription and POSTs each
// message to an HTTP endpoint as Eventarc (or Cloud Pub/Sub push) does. See
// package emulators/pushdeliver and docs/config.md for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/nodebatch/nodebatch/emulators/pushdeliver"

	"github.com/nodebatch/nodebatch/shared/logging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pushdeliver:", err)
		os.Exit(1)
	}
}

type options struct {
	project, pubsubHost, logLevel string
	topo                          pushdeliver.Topology
	ensure                        bool
	format, tokenFile, token      string
	cfg                           pushdeliver.Config
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pushdeliver", flag.ContinueOnError)
	fs.StringVar(&o.project, "project", os.Getenv("GOOGLE_CLOUD_PROJECT"), "Google Cloud project id (default $GOOGLE_CLOUD_PROJECT)")
	fs.StringVar(&o.pubsubHost, "pubsub-host", os.Getenv("PUBSUB_EMULATOR_HOST"), "Pub/Sub emulator host:port (default $PUBSUB_EMULATOR_HOST)")
	fs.StringVar(&o.topo.Topic, "topic", "", "topic of the subscription (looked up when empty; created with -ensure)")
	fs.StringVar(&o.topo.Subscription, "subscription", "", "subscription to pull from (required)")
	fs.StringVar(&o.topo.DeadLetterTopic, "dead-letter-topic", "", "topic for messages that failed -max-attempts pushes (empty: retry forever)")
	fs.StringVar(&o.topo.DeadLetterSubscription, "dead-letter-subscription", "", "with -ensure: a subscription that keeps dead-lettered messages")
	fs.DurationVar(&o.topo.AckDeadline, "ack-deadline", 60*time.Second, "with -ensure: ack deadline of created subscriptions")
	fs.BoolVar(&o.ensure, "ensure", false, "create the topic, ordered subscription and dead-letter topic/subscription if missing")
	fs.StringVar(&o.cfg.Endpoint, "endpoint", "", "URL each message is POSTed to (required)")
	fs.StringVar(&o.format, "format", "cloudevent", "request format: cloudevent (Eventarc messagePublished, binary mode) or push (plain push envelope)")
	fs.IntVar(&o.cfg.MaxInFlight, "max-in-flight", 20, "maximum push requests in flight over all ordering keys")
	fs.IntVar(&o.cfg.Prefetch, "prefetch", 0, "maximum unacknowledged messages held (0: 50 × max-in-flight)")
	fs.IntVar(&o.cfg.MaxAttempts, "max-attempts", 5, "pushes before a message is dead-lettered")
	fs.DurationVar(&o.cfg.MinBackoff, "min-backoff", 100*time.Millisecond, "delay before the first retry; doubles each attempt")
	fs.DurationVar(&o.cfg.MaxBackoff, "max-backoff", 10*time.Second, "longest delay between retries")
	fs.DurationVar(&o.cfg.RequestTimeout, "request-timeout", 60*time.Second, "timeout of one push request")
	fs.DurationVar(&o.cfg.MaxExtension, "max-extension", 60*time.Minute, "how long the ack deadline is extended while a message is pushed and retried")
	fs.BoolVar(&o.cfg.Duplicate, "duplicate", false, "push every message twice (at-least-once testing)")
	fs.StringVar(&o.token, "bearer-token", "", "static token sent as Authorization: Bearer")
	fs.StringVar(&o.tokenFile, "bearer-token-file", "", "file holding the bearer token, re-read for every request (rotation)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"project", o.project}, {"subscription", o.topo.Subscription}, {"endpoint", o.cfg.Endpoint},
	} {
		if f.v == "" {
			missing = append(missing, "-"+f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if o.token != "" && o.tokenFile != "" {
		return nil, errors.New("-bearer-token and -bearer-token-file are exclusive")
	}
	if o.ensure && o.topo.Topic == "" {
		return nil, errors.New("-ensure needs -topic")
	}
	f, err := pushdeliver.ParseFormat(o.format)
	if err != nil {
		return nil, err
	}
	o.cfg.Format = f
	o.cfg.Subscription = o.topo.Subscription
	o.cfg.Topic = o.topo.Topic
	o.cfg.DeadLetterTopic = o.topo.DeadLetterTopic
	switch {
	case o.token != "":
		tok := o.token
		o.cfg.Token = func(context.Context) (string, error) { return tok, nil }
	case o.tokenFile != "":
		path := o.tokenFile
		o.cfg.Token = func(context.Context) (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("read bearer token file: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
	return o, nil
}

func run() error {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := logging.New(os.Stderr, level)
	o.cfg.Logger = logger
	if o.pubsubHost == "" {
		return errors.New("no Pub/Sub emulator: set -pubsub-host or PUBSUB_EMULATOR_HOST (this tool is for the local stack)")
	}
	// The client library finds the emulator through this variable.
	if err := os.Setenv("PUBSUB_EMULATOR_HOST", o.pubsubHost); err != nil {
		return fmt.Errorf("set PUBSUB_EMULATOR_HOST: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := pubsub.NewClient(ctx, o.project)
	if err != nil {
		return fmt.Errorf("pubsub client for %s at %s: %w", o.project, o.pubsubHost, err)
	}
	defer client.Close()
	if o.ensure {
		if err := pushdeliver.EnsureTopology(ctx, client, o.topo); err != nil {
			return err
		}
	}
	d, err := pushdeliver.New(client, o.cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
