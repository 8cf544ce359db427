package hclcheck_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/infra/hclcheck"
)

// writeTree writes files (relative path → contents) under a temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, s := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// code is a miniature functions/ + shared/ tree.
var code = map[string]string{
	"functions/batch/batch.go": `package batch

import "github.com/GoogleCloudPlatform/functions-framework-go/functions"

func init() { functions.HTTP("Batch", nil) }
`,
	"functions/patch/patch.go": `package patch

import ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"

const entry = "Patch"

func init() { ff.CloudEvent(entry, nil) }
`,
	"functions/patch/patch_test.go": `package patch

import "github.com/GoogleCloudPlatform/functions-framework-go/functions"

func init() { functions.HTTP("OnlyInTests", nil) }

const x = "NODEBATCH_ONLY_IN_TESTS"
`,
	"functions/other/other.go": `package other

// Not the framework: must not count.
type fake struct{}
func (fake) HTTP(string, any) {}
var functions fake
func init() { functions.HTTP("Impostor", nil) }
`,
	"shared/config/config.go": `package config

import "os"

const EnvTopic = "NODEBATCH_TOPIC"

type Settings struct {
	Zone string ` + "`env:\"NODEBATCH_ZONE,required\"`" + `
}

func Load(getenv func(string) string) {
	_ = getenv("KUBECONFIG")
	_ = os.Getenv("GOOGLE_CLOUD_PROJECT")
	_ = []string{"NODEBATCH_MAX_NODES"}
	_ = "not an env name"
}
`,
	"shared/config/testdata/x.go": `package x
const y = "NODEBATCH_IN_TESTDATA"
`,
}

func TestScanCode(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, code)
	c, err := hclcheck.ScanCode(filepath.Join(dir, "functions"), filepath.Join(dir, "shared"))
	if err != nil {
		t.Fatalf("ScanCode() error = %v", err)
	}
	var regs []string
	for name, rs := range c.Registrations {
		for _, r := range rs {
			regs = append(regs, name+"/"+r.Kind)
		}
	}
	var env []string
	for n := range c.Env {
		env = append(env, n)
	}
	sort.Strings(regs)
	sort.Strings(env)
	if diff := cmp.Diff([]string{"Batch/HTTP", "Patch/CloudEvent"}, regs); diff != "" {
		t.Errorf("registrations (-want +got):\n%s", diff)
	}
	want := []string{"GOOGLE_CLOUD_PROJECT", "KUBECONFIG", "NODEBATCH_MAX_NODES", "NODEBATCH_TOPIC", "NODEBATCH_ZONE"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("env names read (-want +got):\n%s", diff)
	}
	if _, err := hclcheck.ScanCode(filepath.Join(dir, "missing")); err == nil {
		t.Error("ScanCode(missing dir) error = nil, want an error")
	}
}

const functionsTF = header + `
variable "runtime" {
  description = "Runtime."
  type        = string
}

locals {
  common = {
    NODEBATCH_TOPIC = "t"
    KUBECONFIG      = "/k"
  }
}

resource "google_cloudfunctions2_function" "batch" {
  name = "batch"
  build_config {
    runtime     = var.runtime
    entry_point = "Batch"
  }
  service_config {
    environment_variables = merge(local.common, {
      NODEBATCH_MAX_NODES = "10"
      "NODEBATCH_ZONE"    = "a"
    })
  }
}

resource "google_cloudfunctions2_function" "patch" {
  name = "patch"
  build_config {
    runtime     = var.runtime
    entry_point = "Patch"
  }
  service_config {
    environment_variables = local.common
    secret_environment_variables {
      key     = "GOOGLE_CLOUD_PROJECT"
      secret  = "s"
      version = "1"
    }
  }
}

resource "google_cloud_run_v2_service" "relay" {
  name = "relay"
  template {
    containers {
      image = "i"
      env {
        name  = "NODEBATCH_TOPIC"
        value = "t"
      }
    }
  }
}
`

func parse(t *testing.T, src string) *hclcheck.Module {
	t.Helper()
	m, err := hclcheck.Parse(map[string][]byte{"f.tf": []byte(src)})
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	return m
}

func scan(t *testing.T) *hclcheck.Code {
	t.Helper()
	dir := writeTree(t, code)
	c, err := hclcheck.ScanCode(filepath.Join(dir, "functions"), filepath.Join(dir, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func messages(ps []hclcheck.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestWiringAgrees(t *testing.T) {
	t.Parallel()
	m := parse(t, functionsTF)
	if ps := m.Check(); len(ps) > 0 {
		t.Fatalf("Check() = %v, want none", messages(ps))
	}
	c := scan(t)
	eps, ps := m.EntryPoints()
	ps = append(ps, hclcheck.CheckEntryPoints(eps, c)...)
	vars, vps := m.EnvVars()
	ps = append(ps, vps...)
	ps = append(ps, hclcheck.CheckEnv(vars, map[string]*hclcheck.Code{
		"google_cloudfunctions2_function": c, "google_cloud_run_v2_service": c,
	})...)
	if len(ps) > 0 {
		t.Errorf("consistent wiring has problems: %v", messages(ps))
	}
	var got []string
	for _, v := range vars {
		got = append(got, v.Resource+" "+v.Name)
	}
	want := []string{
		"google_cloud_run_v2_service.relay NODEBATCH_TOPIC",
		"google_cloudfunctions2_function.batch NODEBATCH_TOPIC",
		"google_cloudfunctions2_function.batch KUBECONFIG",
		"google_cloudfunctions2_function.batch NODEBATCH_MAX_NODES",
		"google_cloudfunctions2_function.batch NODEBATCH_ZONE",
		"google_cloudfunctions2_function.patch NODEBATCH_TOPIC",
		"google_cloudfunctions2_function.patch KUBECONFIG",
		"google_cloudfunctions2_function.patch GOOGLE_CLOUD_PROJECT",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EnvVars() (-want +got):\n%s", diff)
	}
}

func TestWiringMismatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		replace  [2]string // in functionsTF
		wantSubs []string  // each must appear in some problem
	}{
		{
			name:     "entry point not registered",
			replace:  [2]string{`entry_point = "Patch"`, `entry_point = "Pacth"`},
			wantSubs: []string{`google_cloudfunctions2_function.patch: entry_point "Pacth" is not registered by the code`, "registered: Batch, Patch"},
		},
		{
			name:     "entry point only registered in a test file",
			replace:  [2]string{`entry_point = "Patch"`, `entry_point = "OnlyInTests"`},
			wantSubs: []string{`entry_point "OnlyInTests" is not registered`},
		},
		{
			name:     "entry point not a literal",
			replace:  [2]string{`entry_point = "Batch"`, `entry_point = var.runtime`},
			wantSubs: []string{"google_cloudfunctions2_function.batch: entry_point must be a literal string"},
		},
		{
			name:     "env name the code does not read",
			replace:  [2]string{`NODEBATCH_MAX_NODES = "10"`, `NODEBATCH_MAX_NODE = "10"`},
			wantSubs: []string{"google_cloudfunctions2_function.batch sets NODEBATCH_MAX_NODE, which its code never reads (did you mean NODEBATCH_MAX_NODES?)"},
		},
		{
			name:     "env name in a local",
			replace:  [2]string{`NODEBATCH_TOPIC = "t"`, `NODEBATCH_TOPICS = "t"`},
			wantSubs: []string{"batch sets NODEBATCH_TOPICS", "patch sets NODEBATCH_TOPICS"},
		},
		{
			name:     "cloud run env block",
			replace:  [2]string{`name  = "NODEBATCH_TOPIC"`, `name  = "NODEBATCH_IN_TESTDATA"`},
			wantSubs: []string{"google_cloud_run_v2_service.relay sets NODEBATCH_IN_TESTDATA, which its code never reads"},
		},
		{
			name:     "reserved name",
			replace:  [2]string{`"NODEBATCH_ZONE"    = "a"`, `PORT = "8080"`},
			wantSubs: []string{"google_cloudfunctions2_function.batch sets PORT, which the platform reserves"},
		},
		{
			name:     "names hidden in a variable",
			replace:  [2]string{`environment_variables = local.common`, `environment_variables = var.runtime`},
			wantSubs: []string{"cannot tell the environment variable names of this expression statically"},
		},
		{
			name:     "set twice",
			replace:  [2]string{`"NODEBATCH_ZONE"    = "a"`, `"NODEBATCH_TOPIC"    = "a"`},
			wantSubs: []string{"google_cloudfunctions2_function.batch sets NODEBATCH_TOPIC twice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := strings.Replace(functionsTF, tt.replace[0], tt.replace[1], 1)
			if src == functionsTF {
				t.Fatalf("replacement %q not found", tt.replace[0])
			}
			m := parse(t, src)
			c := scan(t)
			eps, ps := m.EntryPoints()
			ps = append(ps, hclcheck.CheckEntryPoints(eps, c)...)
			vars, vps := m.EnvVars()
			ps = append(ps, vps...)
			ps = append(ps, hclcheck.CheckEnv(vars, map[string]*hclcheck.Code{
				"google_cloudfunctions2_function": c, "google_cloud_run_v2_service": c,
			})...)
			got := strings.Join(messages(ps), "\n")
			for _, s := range tt.wantSubs {
				if !strings.Contains(got, s) {
					t.Errorf("problems = %q, want one containing %q", got, s)
				}
			}
		})
	}
}

func TestCheckEnvUnmappedType(t *testing.T) {
	t.Parallel()
	m := parse(t, functionsTF)
	vars, _ := m.EnvVars()
	ps := hclcheck.CheckEnv(vars, map[string]*hclcheck.Code{"google_cloudfunctions2_function": scan(t)})
	got := strings.Join(messages(ps), "\n")
	if !strings.Contains(got, "no Go code is mapped to resource type google_cloud_run_v2_service") {
		t.Errorf("CheckEnv() = %q, want a problem for the unmapped Cloud Run service", got)
	}
}

func TestModuleImports(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"functions/a/a.go":      "package a\nimport (\n\t_ \"example.com/m/shared/b\"\n\t_ \"fmt\"\n)\n",
		"functions/a/a_test.go": "package a\nimport _ \"example.com/m/emulators/x\"\n",
		"shared/b/b.go":         "package b\nimport _ \"example.com/m/relay/c\"\n",
		"relay/c/c.go":          "package c\n",
	})
	got, err := hclcheck.ModuleImports(dir, "example.com/m", "functions/a")
	if err != nil {
		t.Fatalf("ModuleImports() error = %v", err)
	}
	if diff := cmp.Diff([]string{"functions/a", "relay/c", "shared/b"}, got); diff != "" {
		t.Errorf("ModuleImports() (-want +got):\n%s", diff)
	}
	if _, err := hclcheck.ModuleImports(dir, "example.com/m", "functions/missing"); err == nil {
		t.Error("ModuleImports(missing package) error = nil, want an error")
	}
}
