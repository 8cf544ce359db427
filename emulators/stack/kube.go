package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Identities the API server knows from its token file.
const (
	// AdminUser is in system:masters: cluster-admin, for tests and kubectl.
	AdminUser = "nodebatch-admin"
	// PatcherUser is nodebatch's own identity (both functions and the
	// relay's node listing). It holds only infra/k8s/impersonator.yaml: the
	// right to impersonate a person for reading and patching nodes, and no
	// right on nodes of its own.
	PatcherUser = "nodebatch-patch"
	// PatcherRole names the ClusterRole and ClusterRoleBinding for PatcherUser.
	PatcherRole = "nodebatch-impersonator"
)

// auditPolicy logs every request on nodes and every access review at
// Metadata level (who, as whom, which verb on which node, with the
// impersonated user's extras such as nodebatch.dev/batch-id), and nothing
// else, so the log stays small under the bench.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["nodes"]
      - group: "authorization.k8s.io"
        resources: ["selfsubjectaccessreviews"]
  - level: None
`

// kubeParts are the etcd and API server processes, ready to start.
type kubeParts struct {
	etcd      ProcessSpec
	apiserver ProcessSpec
}

// prepareKube writes certificates and the token file, wipes old etcd data
// (the emulators are in-memory too, so every start is a clean cluster) and
// returns the process specs.
func prepareKube(cfg *Config, info *Info) (*kubeParts, error) {
	kubeDir := filepath.Join(cfg.StateDir, "kube")
	pki, err := ensurePKI(filepath.Join(kubeDir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("prepare kube-apiserver: %w", err)
	}
	info.CAFile = pki.CAFile
	info.CAData = pki.caPEM
	tokenFile := filepath.Join(kubeDir, "tokens.csv")
	if err := ensureTokens(tokenFile, info); err != nil {
		return nil, fmt.Errorf("prepare kube-apiserver: %w", err)
	}
	auditPolicyFile := filepath.Join(kubeDir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicyFile, []byte(auditPolicy), 0o600); err != nil {
		return nil, fmt.Errorf("prepare kube-apiserver: write audit policy: %w", err)
	}
	// A fresh audit log per start, like the cluster it records.
	info.AuditLog = filepath.Join(kubeDir, "audit.log")
	if err := os.Remove(info.AuditLog); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("prepare kube-apiserver: remove old audit log: %w", err)
	}
	etcdDir := filepath.Join(cfg.StateDir, "etcd")
	if err := os.RemoveAll(etcdDir); err != nil {
		return nil, fmt.Errorf("prepare etcd: wipe data: %w", err)
	}
	etcdURL := "http://" + hostPort(cfg.Ports.EtcdClient)
	parts := &kubeParts{
		etcd: ProcessSpec{
			Name: "etcd",
			Path: filepath.Join(cfg.BinDir, "etcd"),
			Args: []string{"-data-dir=" + etcdDir, "-listen-client-url=" + etcdURL,
				"-listen-peer-url=http://" + hostPort(cfg.Ports.EtcdPeer)},
			Ready: HTTPReady(etcdURL + "/health"),
		},
		apiserver: ProcessSpec{
			Name: "kube-apiserver",
			Path: filepath.Join(cfg.BinDir, "kube-apiserver"),
			Args: []string{
				"--etcd-servers=" + etcdURL,
				"--bind-address=127.0.0.1",
				"--advertise-address=127.0.0.1",
				// The default reconciler refuses a loopback advertise address;
				// nothing here needs the default/kubernetes Endpoints.
				"--endpoint-reconciler-type=none",
				"--secure-port=" + strconv.Itoa(cfg.Ports.APIServer),
				"--cert-dir=" + filepath.Join(kubeDir, "certs"),
				"--tls-cert-file=" + pki.CertFile,
				"--tls-private-key-file=" + pki.KeyFile,
				"--token-auth-file=" + tokenFile,
				"--authorization-mode=RBAC",
				"--anonymous-auth=false",
				"--service-account-issuer=https://kubernetes.default.svc",
				"--service-account-key-file=" + pki.SAPubFile,
				"--service-account-signing-key-file=" + pki.SAKeyFile,
				"--service-cluster-ip-range=10.0.0.0/24",
				"--profiling=false",
				"--audit-policy-file=" + auditPolicyFile,
				"--audit-log-path=" + info.AuditLog,
				"--audit-log-format=json",
				// Tests and benchmarks create and patch thousands of nodes
				// at once; the defaults (400/200) would throttle the stack
				// rather than the code under test.
				"--max-requests-inflight=2000",
				"--max-mutating-requests-inflight=1000",
				"--v=0",
			},
			Ready: apiserverReady(info),
		},
	}
	return parts, nil
}

// ensureTokens reads the token file, or writes a new one with random tokens.
// Format: token,user,uid,"group1,group2".
func ensureTokens(path string, info *Info) error {
	if b, err := os.ReadFile(path); err == nil {
		for line := range strings.Lines(string(b)) {
			f := strings.SplitN(strings.TrimSpace(line), ",", 3)
			if len(f) < 2 {
				continue
			}
			switch f[1] {
			case AdminUser:
				info.AdminToken = f[0]
			case PatcherUser:
				info.PatcherToken = f[0]
			}
		}
		if info.AdminToken != "" && info.PatcherToken != "" {
			return nil
		}
	}
	info.AdminToken, info.PatcherToken = randomToken(), randomToken()
	content := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n",
		info.AdminToken, AdminUser, AdminUser, info.PatcherToken, PatcherUser, PatcherUser)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// HTTPReady is a readiness probe: GET url answers 200.
func HTTPReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// apiserverReady probes /readyz as the admin, trusting only our CA.
func apiserverReady(info *Info) func(context.Context) error {
	return func(ctx context.Context) error {
		client, err := kubernetes.NewForConfig(info.AdminConfig())
		if err != nil {
			return fmt.Errorf("readyz client: %w", err)
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("GET /readyz: %w (%s)", err, body)
		}
		return nil
	}
}

// configure applies infra/k8s (the impersonator role bound to PatcherUser,
// the node roles, the local users and policy) and writes both kubeconfigs.
func (k *kubeParts) configure(ctx context.Context, info *Info) error {
	if err := applyManifests(ctx, info.AdminConfig(), PatcherUser); err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	dir := filepath.Dir(filepath.Dir(info.CAFile)) // {state}/kube
	info.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	info.PatcherKubeconfig = filepath.Join(dir, "patcher.kubeconfig")
	if err := WriteKubeconfig(info.AdminKubeconfig, info.AdminConfig(), AdminUser); err != nil {
		return err
	}
	return WriteKubeconfig(info.PatcherKubeconfig, info.PatcherConfig(), PatcherUser)
}

// restConfig returns a config for the API server with a bearer token.
func restConfig(info *Info, token string) *rest.Config {
	return &rest.Config{
		Host:            info.APIServerURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: info.CAData},
		QPS:             -1, // no client-side throttling: the stack is local
	}
}
