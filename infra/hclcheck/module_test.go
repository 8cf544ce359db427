package hclcheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/infra/hclcheck"
)

// header declares providers so snippets only need their own blocks.
const header = `
terraform {
  required_providers {
    google  = { source = "hashicorp/google" }
    archive = { source = "hashicorp/archive" }
  }
}
`

// good uses every construct the checks must accept.
const good = `
variable "project" {
  description = "The project."
  type        = string
}

variable "names" {
  description = "Topic names."
  type        = map(object({ retention = optional(string, "600s") }))
  default     = {}

  validation {
    condition     = length(var.names) < 10
    error_message = "Too many."
  }
}

locals {
  prefix = "nb-${var.project}"
  files  = [for f in fileset(path.module, "*.go") : f if !endswith(f, "_test.go")]
  upper  = { for k, v in var.names : upper(k) => v }
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_pubsub_topic" "t" {
  for_each = local.upper
  name     = "${local.prefix}-${each.key}-${data.google_project.this.number}"
  message_retention_duration = each.value.retention

  lifecycle {
    ignore_changes = [labels]
  }
}

resource "google_pubsub_topic" "counted" {
  count    = 2
  name     = "c${count.index}"
  provider = google
}

data "archive_file" "zip" {
  type        = "zip"
  output_path = "${path.module}/x.zip"

  dynamic "source" {
    for_each = local.files
    content {
      filename = source.value
      content  = file(source.value)
    }
  }

  dynamic "source" {
    for_each = local.files
    iterator = f
    content {
      filename = f.value
      content  = "x"
    }
  }
}

output "topics" {
  description = "Topic IDs."
  value       = [for t in google_pubsub_topic.t : t.id]
}

output "zip" {
  description = "Zip hash."
  value       = [data.archive_file.zip.output_md5, google_pubsub_topic.counted[0].name]
}
`

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string // problems, as "file:line: message"
	}{
		{name: "consistent module", files: map[string]string{"a.tf": header + good}},
		{
			name: "undeclared variable",
			files: map[string]string{"a.tf": header + `
resource "google_pubsub_topic" "t" {
  name = var.nope
}
`},
			want: []string{"a.tf:10: reference to undeclared variable var.nope"},
		},
		{
			name: "unused variable and local",
			files: map[string]string{"a.tf": header + `
variable "unused" {
  description = "Nobody reads me."
  type        = string

  validation {
    condition     = var.unused != ""
    error_message = "Empty."
  }
}

locals {
  lonely = 1
}
`},
			want: []string{
				"a.tf:9: var.unused is declared but never used",
				"a.tf:20: local.lonely is declared but never used",
			},
		},
		{
			name: "undeclared local, resource, data source",
			files: map[string]string{"a.tf": header + `
output "o" {
  description = "Broken."
  value       = [local.nope, google_pubsub_topic.missing.id, data.google_project.missing.number]
}
`},
			want: []string{
				"a.tf:11: reference to undeclared local value local.nope",
				"a.tf:11: reference to undeclared resource google_pubsub_topic.missing",
				"a.tf:11: reference to undeclared data source data.google_project.missing",
			},
		},
		{
			name: "bare name and iterator out of scope",
			files: map[string]string{"a.tf": header + `
resource "google_pubsub_topic" "t" {
  name   = topic_name
  labels = { x = source.value }
}
`},
			want: []string{
				`a.tf:10: "topic_name" is not a declared name: not a variable, local, resource or iterator`,
				"a.tf:11: reference to undeclared resource source.value",
			},
		},
		{
			name: "undocumented variable and output",
			files: map[string]string{"a.tf": header + `
variable "v" {
  default = 1
}

output "o" {
  value = var.v
}
`},
			want: []string{
				"a.tf:9: var.v has no description",
				"a.tf:9: var.v has no type",
				"a.tf:13: output.o has no description",
			},
		},
		{
			name: "declared twice across files",
			files: map[string]string{
				"a.tf": header + `
variable "v" {
  description = "One."
  type        = string
}
output "o" {
  description = "Uses v."
  value       = var.v
}
`,
				"b.tf": `
variable "v" {
  description = "Two."
  type        = string
}
`,
			},
			want: []string{"b.tf:2: var.v declared twice (also at a.tf:9)"},
		},
		{
			name: "provider not required",
			files: map[string]string{"a.tf": header + `
resource "random_id" "r" {
  byte_length = 4
}
`},
			want: []string{`a.tf:9: random_id.r: provider "random" is not in terraform.required_providers`},
		},
		{
			name: "resource block with one label",
			files: map[string]string{"a.tf": header + `
resource "google_pubsub_topic" {
  name = "x"
}
`},
			want: []string{"a.tf:9: resource block needs 2 labels (type, name), has 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := map[string][]byte{}
			for n, s := range tt.files {
				src[n] = []byte(s)
			}
			m, err := hclcheck.Parse(src)
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			var got []string
			for _, p := range m.Check() {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check() problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"unclosed block":  `resource "google_pubsub_topic" "t" {`,
		"bad expression":  `locals { x = 1 + }`,
		"stray attribute": `x = = 1`,
	} {
		if _, err := hclcheck.Parse(map[string][]byte{"broken.tf": []byte(src)}); err == nil || !strings.Contains(err.Error(), "broken.tf") {
			t.Errorf("%s: Parse() error = %v, want a parse error naming broken.tf", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	if _, err := hclcheck.Load(t.TempDir()); err == nil {
		t.Error("Load(empty dir) error = nil, want an error: checks on no files would pass vacuously")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(header+good), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := hclcheck.Load(dir)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if ps := m.Check(); len(ps) != 0 {
		t.Errorf("Check() = %v, want none", ps)
	}
	var got []string
	for _, b := range m.Blocks("resource") {
		got = append(got, b.Address())
	}
	if diff := cmp.Diff([]string{"google_pubsub_topic.t", "google_pubsub_topic.counted"}, got); diff != "" {
		t.Errorf("Blocks(resource) (-want +got):\n%s", diff)
	}
}

func TestUnformatted(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{
		"ok.tf":  []byte("locals {\n  a   = 1\n  bcd = 2\n}\n"),
		"bad.tf": []byte("locals {\n  a = 1\n  bcd = 2\n}\n"),
		"ind.tf": []byte("locals {\n    a = 1\n}\n"),
	}
	if diff := cmp.Diff([]string{"bad.tf", "ind.tf"}, hclcheck.Unformatted(files)); diff != "" {
		t.Errorf("Unformatted() (-want +got):\n%s", diff)
	}
}
