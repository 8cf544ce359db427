package telemetry

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/oauth"
	"google.golang.org/grpc/metadata"
)

// googleScope is the OAuth scope Google's OTLP endpoint accepts.
const googleScope = "https://www.googleapis.com/auth/cloud-platform"

// googleDial returns the dial options that authenticate gRPC OTLP calls to
// telemetry.googleapis.com with application default credentials (on Cloud
// Run: the service's identity).
func googleDial(ctx context.Context, project string) ([]grpc.DialOption, error) {
	ts, err := google.DefaultTokenSource(ctx, googleScope)
	if err != nil {
		return nil, fmt.Errorf("telemetry: application default credentials for %s: %w", googleHost, err)
	}
	opts := []grpc.DialOption{grpc.WithPerRPCCredentials(oauth.TokenSource{TokenSource: ts})}
	if project != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(withUserProject(ctx, project), method, req, reply, cc, o...)
		}))
	}
	return opts, nil
}

// googleHTTPClient is googleDial for OTLP over HTTP.
func googleHTTPClient(ctx context.Context, project string) (*http.Client, error) {
	ts, err := google.DefaultTokenSource(ctx, googleScope)
	if err != nil {
		return nil, fmt.Errorf("telemetry: application default credentials for %s: %w", googleHost, err)
	}
	c := oauth2.NewClient(context.WithoutCancel(ctx), ts)
	if project != "" {
		c.Transport = userProject{base: c.Transport, project: project}
	}
	return c, nil
}

// userProject sends x-goog-user-project, which bills and authorizes the
// export against the project when the credentials belong to another one.
type userProject struct {
	base    http.RoundTripper
	project string
}

func (u userProject) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("x-goog-user-project", u.project)
	return u.base.RoundTrip(r)
}

func withUserProject(ctx context.Context, project string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-goog-user-project", project)
}
