//go:build tools

// Package tools pins modules the project uses before code imports them, and
// tools run with `go run`.
package tools

import (
	_ "cloud.google.com/go/firestore"
	_ "cloud.google.com/go/pubsub/v2"
	_ "cloud.google.com/go/pubsub/v2/pstest"
	_ "github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	_ "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	_ "github.com/cloudevents/sdk-go/v2"
	_ "github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/gorilla/websocket"
	_ "github.com/hashicorp/hcl/v2/hclparse"
	_ "github.com/robfig/cron/v3"
	_ "golang.org/x/time/rate"
	_ "golang.org/x/vuln/cmd/govulncheck"
	_ "google.golang.org/api/idtoken"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/util/validation"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
)
