package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Plugin and the types below are krew's manifest shape, as in
// sigs.k8s.io/krew pkg/index/types.go (commit db921d5b457a).
type Plugin struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PluginSpec `json:"spec"`
}

// PluginSpec is krew's index.PluginSpec.
type PluginSpec struct {
	Version          string     `json:"version,omitempty"`
	ShortDescription string     `json:"shortDescription,omitempty"`
	Description      string     `json:"description,omitempty"`
	Caveats          string     `json:"caveats,omitempty"`
	Homepage         string     `json:"homepage,omitempty"`
	Platforms        []Platform `json:"platforms,omitempty"`
}

// Platform is krew's index.Platform.
type Platform struct {
	URI      string                `json:"uri,omitempty"`
	Sha256   string                `json:"sha256,omitempty"`
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	Files    []FileOperation       `json:"files"`
	Bin      string                `json:"bin"`
}

// FileOperation is krew's index.FileOperation.
type FileOperation struct {
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

var (
	safeName    = regexp.MustCompile(`^[\w-]+$`)
	validSHA256 = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// krewPlatforms are the os/arch pairs krew's validate-krew-manifest knows.
var krewPlatforms = [][2]string{
	{"windows", "386"}, {"windows", "amd64"}, {"windows", "arm64"},
	{"linux", "386"}, {"linux", "amd64"}, {"linux", "arm"}, {"linux", "arm64"}, {"linux", "ppc64le"},
	{"darwin", "386"}, {"darwin", "amd64"}, {"darwin", "arm64"},
}

// validate applies krew's rules: internal/index/validation ValidatePlugin
// (apiVersion, kind, name, short description, version, each platform's
// uri, sha256, bin, files and os/arch-only selector) and
// cmd/validate-krew-manifest (every platform matches a supported os/arch,
// no os/arch matched by two platforms).
func validate(name string, p Plugin) error {
	switch {
	case p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2":
		return fmt.Errorf("apiVersion %q not supported", p.APIVersion)
	case p.Kind != "Plugin":
		return fmt.Errorf("kind %q, want Plugin", p.Kind)
	case !safeName.MatchString(name):
		return fmt.Errorf("name %q not allowed", name)
	case p.Name != name:
		return fmt.Errorf("plugin should be named %q, not %q", name, p.Name)
	case p.Spec.ShortDescription == "" || strings.ContainsAny(p.Spec.ShortDescription, "\r\n"):
		return errors.New("short description empty or with line breaks")
	case len(p.Spec.Platforms) == 0:
		return errors.New("no platform")
	case !versionPattern.MatchString(p.Spec.Version):
		return fmt.Errorf("version %q is not v-prefixed semver", p.Spec.Version)
	}
	matched := map[[2]string]int{}
	for i, pl := range p.Spec.Platforms {
		switch {
		case pl.URI == "":
			return fmt.Errorf("platform %d: uri has to be set", i)
		case !validSHA256.MatchString(pl.Sha256):
			return fmt.Errorf("platform %d: sha256 %q not valid", i, pl.Sha256)
		case pl.Bin == "":
			return fmt.Errorf("platform %d: bin has to be set", i)
		case pl.Files != nil && len(pl.Files) == 0:
			return fmt.Errorf("platform %d: files has to be unspecified or non-empty", i)
		case pl.Selector == nil || (pl.Selector.MatchLabels == nil && len(pl.Selector.MatchExpressions) == 0):
			return fmt.Errorf("platform %d: nil or empty selector", i)
		}
		for _, f := range pl.Files {
			if f.From == "" || f.To == "" {
				return fmt.Errorf("platform %d: files need from and to", i)
			}
		}
		for k := range pl.Selector.MatchLabels {
			if k != "os" && k != "arch" {
				return fmt.Errorf("platform %d: selector key %q not supported", i, k)
			}
		}
		for _, e := range pl.Selector.MatchExpressions {
			if e.Key != "os" && e.Key != "arch" {
				return fmt.Errorf("platform %d: selector key %q not supported", i, e.Key)
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(pl.Selector)
		if err != nil {
			return fmt.Errorf("platform %d: %w", i, err)
		}
		hit := false
		for _, env := range krewPlatforms {
			if sel.Matches(labels.Set{"os": env[0], "arch": env[1]}) {
				hit = true
				if j, ok := matched[env]; ok {
					return fmt.Errorf("platforms %d and %d both select %s/%s", j, i, env[0], env[1])
				}
				matched[env] = i
			}
		}
		if !hit {
			return fmt.Errorf("platform %d matches no supported platform", i)
		}
	}
	return nil
}

// fakeBuild writes a stand-in binary naming its platform, so each archive
// differs.
func fakeBuild(_ context.Context, p platform, out string) error {
	return os.WriteFile(out, []byte("binary for "+p.OS+"/"+p.Arch), 0o755)
}

// TestManifest renders the release of every platform and checks the
// manifest as krew would: strict parse into its Plugin shape, its
// validation rules, and each platform's archive has the sha256 the
// manifest says and holds bin where files put it.
func TestManifest(t *testing.T) {
	dir := t.TempDir()
	if err := release(t.Context(), fakeBuild, "v0.3.1", "https://example.com/dl/", dir, platforms); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "nodebatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p Plugin
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatalf("parse the manifest: %v\n%s", err, raw)
	}
	if err := validate("nodebatch", p); err != nil {
		t.Fatalf("krew validation: %v\n%s", err, raw)
	}
	if p.Spec.Version != "v0.3.1" || len(p.Spec.Platforms) != len(platforms) {
		t.Errorf("version %q with %d platforms, want v0.3.1 with %d", p.Spec.Version, len(p.Spec.Platforms), len(platforms))
	}
	for i, pl := range p.Spec.Platforms {
		want := platforms[i]
		if diff := cmp.Diff(map[string]string{"os": want.OS, "arch": want.Arch}, pl.Selector.MatchLabels); diff != "" {
			t.Errorf("platform %d selector (-want +got):\n%s", i, diff)
		}
		if wantURI := "https://example.com/dl/v0.3.1/" + want.Archive(); pl.URI != wantURI {
			t.Errorf("platform %d uri = %q, want %q", i, pl.URI, wantURI)
		}
		archive, err := os.ReadFile(filepath.Join(dir, filepath.Base(pl.URI)))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(archive)
		if got := hex.EncodeToString(sum[:]); got != pl.Sha256 {
			t.Errorf("platform %d: archive sha256 %s, manifest says %s", i, got, pl.Sha256)
		}
		files := untar(t, archive)
		if len(pl.Files) != 1 || pl.Files[0].To != "." || pl.Files[0].From != pl.Bin {
			t.Fatalf("platform %d files = %+v, want the binary copied to the root", i, pl.Files)
		}
		if got, want := files[pl.Bin], "binary for "+want.OS+"/"+want.Arch; got != want {
			t.Errorf("platform %d: %s in the archive = %q, want %q", i, pl.Bin, got, want)
		}
		if want.OS == "windows" && !strings.HasSuffix(pl.Bin, ".exe") {
			t.Errorf("platform %d: windows bin %q lacks .exe", i, pl.Bin)
		}
	}
	// The same binaries give the same archives (and manifest).
	again := t.TempDir()
	if err := release(t.Context(), fakeBuild, "v0.3.1", "https://example.com/dl/", again, platforms); err != nil {
		t.Fatal(err)
	}
	raw2, _ := os.ReadFile(filepath.Join(again, "nodebatch.yaml"))
	if diff := cmp.Diff(string(raw), string(raw2)); diff != "" {
		t.Errorf("a second release differs (-first +second):\n%s", diff)
	}
}

func untar(t *testing.T, archive []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(strings.NewReader(string(archive)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode&0o111 == 0 {
			t.Errorf("%s in the archive is not executable (mode %o)", h.Name, h.Mode)
		}
		files[h.Name] = string(b)
	}
}

// TestValidate checks that the validator refuses what krew refuses, so a
// manifest that passes it is one krew would take.
func TestValidate(t *testing.T) {
	good := func() Plugin {
		return Plugin{
			TypeMeta:   metav1.TypeMeta{APIVersion: "krew.googlecontainertools.github.com/v1alpha2", Kind: "Plugin"},
			ObjectMeta: metav1.ObjectMeta{Name: "nodebatch"},
			Spec: PluginSpec{Version: "v1.0.0", ShortDescription: "x", Platforms: []Platform{{
				URI: "https://e/x.tar.gz", Sha256: strings.Repeat("a", 64), Bin: "b",
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"os": "linux", "arch": "amd64"}},
			}}},
		}
	}
	tests := []struct {
		name   string
		change func(*Plugin)
		ok     bool
	}{
		{"good", func(*Plugin) {}, true},
		{"apiVersion", func(p *Plugin) { p.APIVersion = "krew.googlecontainertools.github.com/v1alpha1" }, false},
		{"kind", func(p *Plugin) { p.Kind = "Plugins" }, false},
		{"name", func(p *Plugin) { p.Name = "other" }, false},
		{"short description line break", func(p *Plugin) { p.Spec.ShortDescription = "a\nb" }, false},
		{"version without v", func(p *Plugin) { p.Spec.Version = "1.0.0" }, false},
		{"sha256 upper case", func(p *Plugin) { p.Spec.Platforms[0].Sha256 = strings.Repeat("A", 64) }, false},
		{"no bin", func(p *Plugin) { p.Spec.Platforms[0].Bin = "" }, false},
		{"empty files", func(p *Plugin) { p.Spec.Platforms[0].Files = []FileOperation{} }, false},
		{"selector key", func(p *Plugin) { p.Spec.Platforms[0].Selector.MatchLabels["distro"] = "debian" }, false},
		{"unsupported platform", func(p *Plugin) { p.Spec.Platforms[0].Selector.MatchLabels["os"] = "plan9" }, false},
		{"overlap", func(p *Plugin) {
			q := p.Spec.Platforms[0]
			q.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"os": "linux"}}
			p.Spec.Platforms = append(p.Spec.Platforms, q)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.change(&p)
			if err := validate("nodebatch", p); (err == nil) != tt.ok {
				t.Errorf("validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestReleaseRefusesBadVersion(t *testing.T) {
	for _, v := range []string{"", "1.0.0", "v1", "v1.0.0/../x"} {
		if err := release(t.Context(), fakeBuild, v, DefaultBaseURL, t.TempDir(), platforms); err == nil {
			t.Errorf("release(version %q) = nil, want an error", v)
		}
	}
}
