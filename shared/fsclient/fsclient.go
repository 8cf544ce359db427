// Package fsclient builds the Firestore client of every nodebatch process
// (the functions, the relay, the local product and the test harness), so
// that one rule about errors holds everywhere the product writes or
// listens:
//
// A Canceled status from the server while the caller's own context is live
// is transient. The Firestore emulator answers a write "Canceled: call
// already cancelled" right after a listener on it closed (the commit had
// been applied; notifying the closed listener failed), and a stream can end
// the same way. The caller did not cancel, so the call is answered as
// Unavailable instead, and the client library's own retry policy applies
// (it retries Commit, BeginTransaction, reads and queries on Unavailable,
// with backoff, and reopens a listener from its resume token). A Canceled
// that the caller caused (its context ended) is passed through unchanged.
//
// Because a write that failed this way may have landed, a retried write must
// be idempotent: a Set is; a create that already landed answers
// AlreadyExists, which the store's create paths check against what they
// wrote (shared/store: Create, CreateRevert, StartAttempt, RecordNode).
package fsclient

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// EmulatorHostEnv is the variable the client library reads to use the
// Firestore emulator.
const EmulatorHostEnv = "FIRESTORE_EMULATOR_HOST"

// Option changes how New builds a client.
type Option func(*settings)

type settings struct {
	unary  []grpc.UnaryClientInterceptor
	stream []grpc.StreamClientInterceptor
	opts   []option.ClientOption
	dial   []grpc.DialOption
}

// WithInner adds interceptors between the Canceled rule and the connection:
// tests inject faults with them. Either may be nil.
func WithInner(u grpc.UnaryClientInterceptor, s grpc.StreamClientInterceptor) Option {
	return func(st *settings) {
		if u != nil {
			st.unary = append(st.unary, u)
		}
		if s != nil {
			st.stream = append(st.stream, s)
		}
	}
}

// WithDialOptions adds gRPC dial options to the connection (the emulator's
// too): shared/telemetry instruments Firestore calls with them.
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(st *settings) { st.dial = append(st.dial, d...) }
}

// WithClientOptions passes options to firestore.NewClient.
func WithClientOptions(o ...option.ClientOption) Option {
	return func(st *settings) { st.opts = append(st.opts, o...) }
}

// New returns a Firestore client for project with the Canceled rule
// installed. Like firestore.NewClient it uses the emulator when
// FIRESTORE_EMULATOR_HOST is set. The caller closes it.
//
// With the emulator, the client library dials the emulator itself with no
// way to add interceptors; New dials it the same way with them and hands the
// library that connection (the one the library dials is left idle).
func New(ctx context.Context, project string, opts ...Option) (*firestore.Client, error) {
	var st settings
	for _, o := range opts {
		o(&st)
	}
	dial := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(append([]grpc.UnaryClientInterceptor{UnaryInterceptor}, st.unary...)...),
		grpc.WithChainStreamInterceptor(append([]grpc.StreamClientInterceptor{StreamInterceptor}, st.stream...)...),
	}
	dial = append(dial, st.dial...)
	co := st.opts
	if addr := os.Getenv(EmulatorHostEnv); addr != "" {
		conn, err := grpc.NewClient(emulatorTarget(addr), append(dial,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(emulatorCreds{}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
		)...)
		if err != nil {
			return nil, fmt.Errorf("dial Firestore emulator at %s: %w", addr, err)
		}
		co = append(co, option.WithGRPCConn(conn))
	} else {
		for _, d := range dial {
			co = append(co, option.WithGRPCDialOption(d))
		}
	}
	c, err := firestore.NewClient(ctx, project, co...)
	if err != nil {
		return nil, fmt.Errorf("create Firestore client for %s: %w", project, err)
	}
	return c, nil
}

// emulatorTarget is the library's normalization of the emulator address
// (it accepts a URL-ish "http://host:port").
func emulatorTarget(addr string) string {
	addr = strings.TrimPrefix(addr, "http://")
	addr = strings.TrimPrefix(addr, "https://")
	return strings.TrimSuffix(addr, "/")
}

// emulatorCreds is the bearer the emulator expects ("owner" is an admin):
// what the client library sends it.
type emulatorCreds struct{}

func (emulatorCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}

func (emulatorCreds) RequireTransportSecurity() bool { return false }

// Transient turns err into Unavailable when it is a Canceled status the
// caller did not cause (ctx is live); other errors are returned unchanged.
func Transient(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || status.Code(err) != codes.Canceled {
		return err
	}
	return status.Error(codes.Unavailable, "server cancelled the call (transient): "+status.Convert(err).Message())
}

// UnaryInterceptor applies Transient to every unary call's error, so the
// library's retry policy for Unavailable retries it.
func UnaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return Transient(ctx, invoker(ctx, method, req, reply, cc, opts...))
}

// StreamInterceptor applies Transient to a stream's opening and to every
// message it receives: a listener that the server cancelled is reopened by
// the library (from its resume token) instead of failing.
func StreamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, Transient(ctx, err)
	}
	return &stream{ClientStream: cs, ctx: ctx}, nil
}

type stream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s *stream) RecvMsg(m any) error { return Transient(s.ctx, s.ClientStream.RecvMsg(m)) }
