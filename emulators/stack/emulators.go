package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func firestoreJar(cfg *Config) string {
	return filepath.Join(cfg.CloudSDKDir, "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar")
}

func pubsubJar(cfg *Config) string {
	return filepath.Join(cfg.CloudSDKDir, "platform", "pubsub-emulator", "lib", "cloud-pubsub-emulator-0.8.20-all.jar")
}

// jvmFlags tune the emulators' JVMs for a small shared machine: the C1
// compiler only (C2's compile storms during the first minutes of load, and
// its steady state, cost about twice the CPU for these emulators) and the
// serial collector (no concurrent GC threads). Measured with 1,000 per-node
// read+commit pairs at 50 in flight on 2 cores: Firestore emulator CPU per
// 1,000 nodes 1.3-1.7 s → 0.6 s in steady state, 3.9 s → 1.9 s in the
// first round (docs/design.md "Performance").
var jvmFlags = []string{"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"}

// firestoreSpec runs the emulator's JVM directly (not the launcher script),
// so the process we stop is the JVM itself.
func firestoreSpec(cfg *Config) ProcessSpec {
	host := hostPort(cfg.Ports.Firestore)
	return ProcessSpec{
		Name: "firestore",
		Path: cfg.Java,
		Args: append(slices.Clone(jvmFlags), "-Duser.language=en", "-cp", firestoreJar(cfg),
			"com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
			"--host=127.0.0.1", "--port="+strconv.Itoa(cfg.Ports.Firestore)),
		Ready: httpOK("http://" + host + "/"),
	}
}

func pubsubSpec(cfg *Config) ProcessSpec {
	host := hostPort(cfg.Ports.PubSub)
	return ProcessSpec{
		Name:  "pubsub",
		Path:  cfg.Java,
		Args:  append(slices.Clone(jvmFlags), "-jar", pubsubJar(cfg), "--host=127.0.0.1", "--port="+strconv.Itoa(cfg.Ports.PubSub)),
		Ready: httpOK("http://" + host + "/"),
	}
}

// httpOK probes url until it answers 200 with a body starting "Ok", which
// both emulators serve at their root once they accept requests.
func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "Ok") {
			return fmt.Errorf("GET %s: %s %q", url, resp.Status, body)
		}
		return nil
	}
}
