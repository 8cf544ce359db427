// Command krew builds the release archives of kubectl-nodebatch, one per
// platform, and writes its krew plugin manifest (nodebatch.yaml, from the
// template beside this file) with each archive's URI and sha256:
//
//	go run ./relay/cmd/kubectl-nodebatch/krew -version v0.1.0 -out .nodebatch/dist
//
// Upload the archives to -base-url/VERSION/ and submit nodebatch.yaml to
// a krew index (or install from it: kubectl krew install --manifest
// nodebatch.yaml --archive ARCHIVE).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/nodebatch/nodebatch/shared/logging"
)

// manifestTemplate is nodebatch.yaml.tmpl.
//
//go:embed nodebatch.yaml.tmpl
var manifestTemplate string

// DefaultBaseURL is where the release archives are uploaded.
const DefaultBaseURL = "https://github.com/nodebatch/nodebatch/releases/download"

// platform is one os/arch krew installs on.
type platform struct {
	OS, Arch string
}

// Bin is the executable's name in the archive (krew's bin).
func (p platform) Bin() string {
	if p.OS == "windows" {
		return "kubectl-nodebatch.exe"
	}
	return "kubectl-nodebatch"
}

// Archive is the archive's file name.
func (p platform) Archive() string {
	return fmt.Sprintf("kubectl-nodebatch_%s_%s.tar.gz", p.OS, p.Arch)
}

// platforms are those a release is built for.
var platforms = []platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"},
}

// pick returns the platforms named in list (os/arch,...), all when empty.
func pick(list string) ([]platform, error) {
	if list == "" {
		return platforms, nil
	}
	var ps []platform
	for _, s := range strings.Split(list, ",") {
		i := slices.IndexFunc(platforms, func(p platform) bool { return p.OS+"/"+p.Arch == s })
		if i < 0 {
			return nil, fmt.Errorf("-platforms: %q is not a release platform", s)
		}
		ps = append(ps, platforms[i])
	}
	return ps, nil
}

// manifestPlatform is one entry of the manifest's spec.platforms.
type manifestPlatform struct {
	platform
	URI, Sha256 string
}

// versionPattern is krew's version rule: semantic, with a leading v.
var versionPattern = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// builder builds the binary for p at path out.
type builder func(ctx context.Context, p platform, out string) error

// goBuild cross-compiles the CLI (static, no paths of this machine in it).
func goBuild(ctx context.Context, p platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./relay/cmd/kubectl-nodebatch")
	cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Arch, "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w", p.OS, p.Arch, err)
	}
	return nil
}

// release builds and packs every platform into dir and writes
// dir/nodebatch.yaml.
func release(ctx context.Context, build builder, version, baseURL, dir string, ps []platform) error {
	if !versionPattern.MatchString(version) {
		return fmt.Errorf("-version %q: want a semantic version with a leading v (v1.2.3)", version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	var entries []manifestPlatform
	for _, p := range ps {
		bin := filepath.Join(dir, p.OS+"_"+p.Arch, p.Bin())
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(bin), err)
		}
		if err := build(ctx, p, bin); err != nil {
			return err
		}
		archive := filepath.Join(dir, p.Archive())
		sum, err := pack(bin, archive)
		if err != nil {
			return err
		}
		entries = append(entries, manifestPlatform{platform: p, URI: strings.TrimSuffix(baseURL, "/") + "/" + version + "/" + p.Archive(), Sha256: sum})
	}
	var b bytes.Buffer
	if err := render(&b, version, entries); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "nodebatch.yaml"), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write the manifest: %w", err)
	}
	return nil
}

// render writes the manifest.
func render(w io.Writer, version string, ps []manifestPlatform) error {
	t, err := template.New("nodebatch.yaml").Option("missingkey=error").Parse(manifestTemplate)
	if err != nil {
		return fmt.Errorf("parse the manifest template: %w", err)
	}
	if err := t.Execute(w, struct {
		Version   string
		Platforms []manifestPlatform
	}{version, ps}); err != nil {
		return fmt.Errorf("render the manifest: %w", err)
	}
	return nil
}

// pack writes a tar.gz holding the binary at its root (what the manifest's
// files and bin name) and returns the archive's sha256 in hex. Times and
// owners are fixed, so the same binary gives the same archive.
func pack(bin, archive string) (string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{Name: filepath.Base(bin), Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return "", fmt.Errorf("pack %s: %w", archive, err)
	}
	if _, err := tw.Write(data); err != nil {
		return "", fmt.Errorf("pack %s: %w", archive, err)
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("pack %s: %w", archive, err)
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("pack %s: %w", archive, err)
	}
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", archive, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

func main() {
	version := flag.String("version", "", "the release version, v1.2.3 (required)")
	baseURL := flag.String("base-url", DefaultBaseURL, "where the archives are uploaded, under VERSION/")
	out := flag.String("out", ".nodebatch/dist", "folder for the archives and nodebatch.yaml")
	only := flag.String("platforms", "", "comma-separated os/arch to build (default: all of a release)")
	flag.Parse()
	logger := logging.New(os.Stderr, slog.LevelInfo)
	ps, err := pick(*only)
	if err == nil {
		err = release(context.Background(), goBuild, *version, *baseURL, *out, ps)
	}
	if err != nil {
		logger.Error("krew release", "error", err.Error())
		os.Exit(1)
	}
	logger.Info("krew release written", "dir", *out, "manifest", filepath.Join(*out, "nodebatch.yaml"))
}
