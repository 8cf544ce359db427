package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/stack"
	fconfig "github.com/nodebatch/nodebatch/functions/config"
	rconfig "github.com/nodebatch/nodebatch/relay/config"
	"github.com/nodebatch/nodebatch/shared/auth"
)

// TestProductSettingsLoad: the environment make run gives each service
// loads with that service's own loader (as its main does), into the
// settings make run means: the functions on the default topic, as the
// development issuer's audience, the relay on its port, proxying to the
// batch function, with the development sign-in and the core controls
// without any feature setting.
func TestProductSettingsLoad(t *testing.T) {
	info := stack.Info{Project: "p", FirestoreHost: "127.0.0.1:1", PubSubHost: "127.0.0.1:2", PatcherKubeconfig: "/patcher", AdminKubeconfig: "/admin"}
	envs := map[string]func(string) string{}
	for _, spec := range productProcesses(info, "/bin", "/state") {
		m := map[string]string{}
		for _, kv := range spec.Env {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		envs[spec.Name] = func(k string) string { return m[k] }
	}
	for _, name := range []string{"batch", "patch"} {
		c, err := fconfig.Load(envs[name])
		if err != nil {
			t.Fatalf("%s: config.Load: %v", name, err)
		}
		if c.Project != "p" || c.Topic != fconfig.DefaultTopic || c.Kubeconfig != "/patcher" {
			t.Errorf("%s: project %q, topic %q, kubeconfig %q; want p, %s, /patcher", name, c.Project, c.Topic, c.Kubeconfig, fconfig.DefaultTopic)
		}
	}
	a, err := auth.LoadConfig(envs["batch"])
	if err != nil {
		t.Fatalf("batch: auth.LoadConfig: %v", err)
	}
	if a.Issuers[0].URL != "http://"+issuerAddr || a.Scheduler == nil || a.Scheduler.Audience != "http://"+apiAddr {
		t.Errorf("batch: issuers %+v, scheduler %+v; want the development issuer and the API's URL as scheduler audience", a.Issuers, a.Scheduler)
	}
	r, err := rconfig.Load(envs["relay"])
	if err != nil {
		t.Fatalf("relay: config.Load: %v", err)
	}
	got := []string{r.Addr, r.APIURL.String(), r.Kubeconfig, r.UI().DevTokenURL}
	want := []string{relayAddr, "http://" + apiAddr, "/admin", "http://" + issuerAddr + "/token"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relay: address, API, kubeconfig, dev token URL (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rconfig.CoreFeatures, r.UI().Features); diff != "" {
		t.Errorf("relay: UI features (-want +got):\n%s", diff)
	}
}
