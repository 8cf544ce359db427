package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Info is what a client needs to use a running stack. `make stack` and
// `make test` write it as JSON to a state file (NODEBATCH_STACK_FILE) so that
// other processes, such as test binaries, can share one stack.
type Info struct {
	APIServerURL      string `json:"apiserver_url"`
	CAFile            string `json:"ca_file"`
	CAData            []byte `json:"ca_data"`
	AdminToken        string `json:"admin_token"`
	PatcherToken      string `json:"patcher_token"`
	AdminKubeconfig   string `json:"admin_kubeconfig"`
	PatcherKubeconfig string `json:"patcher_kubeconfig"`
	// AuditLog is the API server's audit log (JSON lines), fresh per start.
	AuditLog      string `json:"audit_log"`
	FirestoreHost string `json:"firestore_host"`
	PubSubHost    string `json:"pubsub_host"`
	// Project is the Google Cloud project id `make stack` users share.
	Project string `json:"project"`
	// PID is the process that owns the stack's children.
	PID int `json:"pid"`
	// PIDs are the stack's child processes by part name (etcd,
	// kube-apiserver, firestore, pubsub, and any added with StartProcess).
	PIDs map[string]int `json:"pids"`
	// Extra holds endpoints of processes added on top (e.g. by `make run`),
	// by name.
	Extra map[string]string `json:"extra,omitempty"`
}

// AdminConfig returns a cluster-admin client config.
func (i *Info) AdminConfig() *rest.Config { return restConfig(i, i.AdminToken) }

// PatcherConfig returns nodebatch's own client config: it may only
// impersonate people (see shared/kubeclient), never touch nodes itself.
func (i *Info) PatcherConfig() *rest.Config { return restConfig(i, i.PatcherToken) }

// WriteInfo writes info as JSON to path atomically, so a reader polling for
// the file never sees half of it.
func WriteInfo(path string, info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("write stack info: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write stack info: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write stack info: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write stack info: %w", err)
	}
	return nil
}

// ReadInfo reads a state file written by WriteInfo.
func ReadInfo(path string) (Info, error) {
	var info Info
	b, err := os.ReadFile(path)
	if err != nil {
		return info, fmt.Errorf("read stack info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read stack info %s: %w", path, err)
	}
	return info, nil
}

// WriteKubeconfig writes a kubeconfig file for cfg (bearer token + CA data)
// with a context named user.
func WriteKubeconfig(path string, cfg *rest.Config, user string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["nodebatch-local"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts[user] = &clientcmdapi.Context{Cluster: "nodebatch-local", AuthInfo: user}
	kc.CurrentContext = user
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// Check probes every part of the stack once on its real endpoint; it tells a
// reader of a state file whether the stack it describes is still up.
func (i *Info) Check(ctx context.Context) error {
	probes := map[string]func(context.Context) error{
		"kube-apiserver": apiserverReady(i),
		"firestore":      httpOK("http://" + i.FirestoreHost + "/"),
		"pubsub":         httpOK("http://" + i.PubSubHost + "/"),
	}
	var errs []error
	for name, probe := range probes {
		if err := probe(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("check stack: %w", err)
	}
	return nil
}
