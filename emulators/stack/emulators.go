package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
)

func firestoreJar(cfg *Config) string {
	return filepath.Join(cfg.CloudSDKDir, "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar")
}

func pubsubJar(cfg *Config) string {
	return filepath.Join(cfg.CloudSDKDir, "platform", "pubsub-emulator", "lib", "cloud-pubsub-emulator-0.8.20-all.jar")
}

// firestoreSpec runs the emulator's JVM directly (not the launcher script),
// so the process we stop is the JVM itself.
func firestoreSpec(cfg *Config) ProcessSpec {
	host := hostPort(cfg.Ports.Firestore)
	return ProcessSpec{
		Name: "firestore",
		Path: cfg.Java,
		Args: []string{"-Duser.language=en", "-cp", firestoreJar(cfg),
			"com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
			"--host=127.0.0.1", "--port=" + strconv.Itoa(cfg.Ports.Firestore)},
		Ready: httpOK("http://" + host + "/"),
	}
}

func pubsubSpec(cfg *Config) ProcessSpec {
	host := hostPort(cfg.Ports.PubSub)
	return ProcessSpec{
		Name:  "pubsub",
		Path:  cfg.Java,
		Args:  []string{"-jar", pubsubJar(cfg), "--host=127.0.0.1", "--port=" + strconv.Itoa(cfg.Ports.PubSub)},
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
