package hclcheck_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/infra/hclcheck"
)

// deployTF is a miniature deployment that passes every check in deploy.go
// and indexes.go; each test case breaks one thing.
const deployTF = `
data "google_project" "this" {
  project_id = "p"
}

locals {
  batch_name = "nb-batch"
  patch_name = "nb-patch"
  batch_url  = "https://${local.batch_name}-${data.google_project.this.number}.europe-west1.run.app"
  patch_url  = "https://${local.patch_name}-${data.google_project.this.number}.europe-west1.run.app"

  kube_identity = {
    reader  = { secret = var.reader, verbs = ["get", "list", "watch"] }
    patcher = { secret = var.patcher, verbs = ["get", "list", "watch", "patch", "update"] }
  }
  kubeconfig_secret = {
    batch = local.kube_identity.reader.secret
    patch = local.kube_identity.patcher.secret
  }
  build_roles = toset(["roles/logging.logWriter", "roles/storage.objectViewer"])
}

resource "google_project_service" "api" {
  service = "cloudfunctions.googleapis.com"
}

resource "google_service_account" "build" {
  account_id = "build"
}
resource "google_service_account" "batch" {
  account_id = "batch"
}
resource "google_service_account" "patch" {
  account_id = "patch"
}
resource "google_service_account" "push" {
  account_id = "push"
}

resource "google_project_iam_member" "build" {
  for_each = local.build_roles
  project  = "p"
  role     = each.value
  member   = google_service_account.build.member
}

resource "google_secret_manager_secret_iam_member" "kubeconfig_accessor" {
  for_each  = local.kubeconfig_secret
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.batch.member
}

resource "time_sleep" "iam" {
  create_duration = "90s"
  depends_on      = [google_project_iam_member.build, google_secret_manager_secret_iam_member.kubeconfig_accessor]
}

resource "google_cloudfunctions2_function" "batch" {
  name = local.batch_name
  build_config {
    entry_point     = "Batch"
    service_account = google_service_account.build.id
  }
  service_config {
    service_account_email = google_service_account.batch.email
    environment_variables = {
      NODEBATCH_SCHEDULER_AUDIENCE = local.batch_url
    }
    secret_volumes {
      secret = local.kubeconfig_secret["batch"]
    }
  }
  depends_on = [google_project_service.api, google_project_iam_member.build, google_secret_manager_secret_iam_member.kubeconfig_accessor, time_sleep.iam]
}

resource "google_cloudfunctions2_function" "patch" {
  name = local.patch_name
  build_config {
    entry_point     = "Patch"
    service_account = google_service_account.build.id
  }
  service_config {
    service_account_email = google_service_account.patch.email
    secret_volumes {
      secret = local.kubeconfig_secret["patch"]
    }
  }
  depends_on = [google_project_service.api, google_project_iam_member.build, google_secret_manager_secret_iam_member.kubeconfig_accessor, time_sleep.iam]
}

resource "google_pubsub_subscription" "push" {
  name = "push"
  push_config {
    push_endpoint = "${local.patch_url}/projects/p/topics/t"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.patch_url
    }
  }
}

resource "google_cloud_scheduler_job" "job" {
  name = "job"
  http_target {
    uri = "${local.batch_url}/v1/batches"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.batch_url
    }
  }
}

resource "google_storage_bucket" "source" {
  name = "src"
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["tmp/"]
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "zip" {
  name   = "batch.zip"
  bucket = google_storage_bucket.source.name
  source = "batch.zip"
}

resource "google_firestore_index" "by_owner" {
  collection  = "batches"
  query_scope = "COLLECTION"
  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "by_owner_since" {
  collection = "batches"
  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "ASCENDING"
  }
  fields {
    field_path = "__name__"
    order      = "ASCENDING"
  }
}
`

var (
	deployRoles = []string{"roles/logging.logWriter", "roles/storage.objectViewer"}
	deployUses  = map[string][]string{"Batch": {"get", "list"}, "Patch": {"get", "patch", "update"}}
	deployEnv   = map[string]string{"google_cloud_scheduler_job": "NODEBATCH_SCHEDULER_AUDIENCE"}
	deployQ     = []hclcheck.Query{
		{Name: "history", Collection: "batches", Order: []hclcheck.IndexField{{Field: "created_at", Desc: true}, {Field: "__name__", Desc: true}}},
		{Name: "history by owner", Collection: "batches", Filters: []hclcheck.QueryFilter{{Field: "owner", Op: "=="}}, Order: []hclcheck.IndexField{{Field: "created_at", Desc: true}, {Field: "__name__", Desc: true}}},
		{Name: "active of owner", Collection: "batches", Filters: []hclcheck.QueryFilter{{Field: "state", Op: "in"}, {Field: "owner", Op: "=="}}},
		{Name: "owner since", Collection: "batches", Filters: []hclcheck.QueryFilter{{Field: "owner", Op: "=="}, {Field: "created_at", Op: ">="}}},
		{Name: "nodes by state", Collection: "nodes", Filters: []hclcheck.QueryFilter{{Field: "state", Op: "=="}}},
	}
)

// deployProblems runs every deployment check on src.
func deployProblems(t *testing.T, src string, queries []hclcheck.Query) []string {
	t.Helper()
	m, err := hclcheck.Parse(map[string][]byte{"f.tf": []byte(src)})
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	var ps []hclcheck.Problem
	ps = append(ps, m.CheckBuildGrants(deployRoles, 90*time.Second)...)
	ps = append(ps, m.CheckIdentities("kube_identity", deployUses)...)
	ps = append(ps, m.CheckAudiences(deployEnv)...)
	ps = append(ps, m.CheckIndexes(queries)...)
	ps = append(ps, m.CheckManagedObjectLifecycle()...)
	return messages(ps)
}

func TestDeployChecksPass(t *testing.T) {
	t.Parallel()
	if got := deployProblems(t, deployTF, deployQ); len(got) > 0 {
		t.Errorf("deploy checks on a consistent module = %v, want none", got)
	}
}

func TestDeployChecksCatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		replace  [2]string // in deployTF; empty to change the queries only
		queries  []hclcheck.Query
		wantSubs []string
	}{
		{
			name:     "build account lacks the source read",
			replace:  [2]string{`"roles/storage.objectViewer"])`, `])`},
			wantSubs: []string{"google_cloudfunctions2_function.batch: its build account google_service_account.build is not granted roles/storage.objectViewer"},
		},
		{
			name:     "no build account of its own",
			replace:  [2]string{"    entry_point     = \"Patch\"\n    service_account = google_service_account.build.id\n", "    entry_point     = \"Patch\"\n"},
			wantSubs: []string{"google_cloudfunctions2_function.patch: build_config.service_account must name a google_service_account"},
		},
		{
			name: "grant left out of depends_on",
			replace: [2]string{
				"  depends_on = [google_project_service.api, google_project_iam_member.build, google_secret_manager_secret_iam_member.kubeconfig_accessor, time_sleep.iam]\n}\n\nresource \"google_cloudfunctions2_function\" \"patch\"",
				"  depends_on = [google_secret_manager_secret_iam_member.kubeconfig_accessor, time_sleep.iam]\n}\n\nresource \"google_cloudfunctions2_function\" \"patch\""},
			wantSubs: []string{
				"google_cloudfunctions2_function.batch: depends_on lacks google_project_iam_member.build",
				"google_cloudfunctions2_function.batch: depends_on lacks google_project_service.api",
			},
		},
		{
			name:     "no wait for propagation",
			replace:  [2]string{`depends_on      = [google_project_iam_member.build, google_secret_manager_secret_iam_member.kubeconfig_accessor]`, `depends_on      = [google_project_iam_member.build]`},
			wantSubs: []string{"google_cloudfunctions2_function.batch: no time_sleep in its depends_on waits for google_secret_manager_secret_iam_member.kubeconfig_accessor"},
		},
		{
			name:     "too short a wait",
			replace:  [2]string{`create_duration = "90s"`, `create_duration = "30s"`},
			wantSubs: []string{"time_sleep.iam: waits 30s before google_cloudfunctions2_function.batch builds; IAM propagation needs at least 1m30s"},
		},
		{
			name:     "wait not a literal",
			replace:  [2]string{`create_duration = "90s"`, `create_duration = var.wait`},
			wantSubs: []string{"time_sleep.iam: create_duration must be a literal duration"},
		},
		{
			name:     "two workloads share an identity",
			replace:  [2]string{`service_account_email = google_service_account.patch.email`, `service_account_email = google_service_account.batch.email`},
			wantSubs: []string{"runs as google_service_account.batch, which google_cloudfunctions2_function.batch runs as too"},
		},
		{
			name:     "runs as the build account",
			replace:  [2]string{`service_account_email = google_service_account.patch.email`, `service_account_email = google_service_account.build.email`},
			wantSubs: []string{"google_cloudfunctions2_function.patch runs as the build account"},
		},
		{
			name:     "more cluster rights than the code uses",
			replace:  [2]string{`batch = local.kube_identity.reader.secret`, `batch = local.kube_identity.patcher.secret`},
			wantSubs: []string{`google_cloudfunctions2_function.batch mounts cluster identity "patcher" (get, list, watch, patch, update), but its code uses only [get, list]: "reader" would do`},
		},
		{
			name:     "fewer cluster rights than the code uses",
			replace:  [2]string{`patch = local.kube_identity.patcher.secret`, `patch = local.kube_identity.reader.secret`},
			wantSubs: []string{`google_cloudfunctions2_function.patch mounts cluster identity "reader", which lacks patch, update`},
		},
		{
			name:     "a kubeconfig that is no identity",
			replace:  [2]string{`secret = local.kubeconfig_secret["patch"]`, `secret = "some-secret"`},
			wantSubs: []string{"google_cloudfunctions2_function.patch mounts a kubeconfig secret that is not one of local.kube_identity"},
		},
		{
			name:     "identity verbs not a literal list",
			replace:  [2]string{`reader  = { secret = var.reader, verbs = ["get", "list", "watch"] }`, `reader  = { secret = var.reader, verbs = var.verbs }`},
			wantSubs: []string{"local.kube_identity.reader has no literal verbs list"},
		},
		{
			name:     "cloudfunctions.net audience",
			replace:  [2]string{`patch_url  = "https://${local.patch_name}-${data.google_project.this.number}.europe-west1.run.app"`, `patch_url  = "https://europe-west1-p.cloudfunctions.net/${local.patch_name}"`},
			wantSubs: []string{"google_pubsub_subscription.push: audience local.patch_url is not a run.app URL"},
		},
		{
			name:     "token for another service than the one called",
			replace:  [2]string{`audience              = local.patch_url`, `audience              = local.batch_url`},
			wantSubs: []string{"google_pubsub_subscription.push: mints tokens for local.batch_url but does not send to it"},
		},
		{
			name:     "audience not a shared local",
			replace:  [2]string{`audience              = local.patch_url`, `audience              = "https://nb-patch-1.europe-west1.run.app"`},
			wantSubs: []string{"google_pubsub_subscription.push: oidc_token.audience must be a local"},
		},
		{
			name:     "receiver expects another audience",
			replace:  [2]string{`NODEBATCH_SCHEDULER_AUDIENCE = local.batch_url`, `NODEBATCH_SCHEDULER_AUDIENCE = local.patch_url`},
			wantSubs: []string{"google_cloudfunctions2_function.batch: NODEBATCH_SCHEDULER_AUDIENCE must be local.batch_url"},
		},
		{
			name:     "receiver is not told the audience",
			replace:  [2]string{`NODEBATCH_SCHEDULER_AUDIENCE = local.batch_url`, `NODEBATCH_OTHER = local.batch_url`},
			wantSubs: []string{"google_cloud_scheduler_job.job: receiver google_cloudfunctions2_function.batch does not set NODEBATCH_SCHEDULER_AUDIENCE"},
		},
		{
			name:     "lifecycle rule deletes managed objects",
			replace:  [2]string{"      age            = 7\n      matches_prefix = [\"tmp/\"]\n", "      age = 30\n"},
			wantSubs: []string{"google_storage_bucket.source: a lifecycle rule deletes objects that Terraform manages"},
		},
		{
			name:    "an index no query needs",
			queries: deployQ[:3],
			wantSubs: []string{
				"google_firestore_index.by_owner_since: index batches(owner ASCENDING, created_at ASCENDING) serves no declared query",
			},
		},
		{
			name: "a query without its index",
			queries: append(append([]hclcheck.Query(nil), deployQ...), hclcheck.Query{
				Name: "nodes by state in order", Collection: "nodes",
				Filters: []hclcheck.QueryFilter{{Field: "state", Op: "=="}},
				Order:   []hclcheck.IndexField{{Field: "position"}},
			}),
			wantSubs: []string{`query "nodes by state in order" needs the composite index nodes(state ASCENDING, position ASCENDING)`},
		},
		{
			name:     "index order differs from the query's",
			replace:  [2]string{"    field_path = \"created_at\"\n    order      = \"DESCENDING\"", "    field_path = \"created_at\"\n    order      = \"ASCENDING\""},
			wantSubs: []string{`query "history by owner" needs the composite index batches(owner ASCENDING, created_at DESCENDING)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := deployTF
			if tc.replace[0] != "" {
				if !strings.Contains(src, tc.replace[0]) {
					t.Fatalf("fixture does not contain %q", tc.replace[0])
				}
				src = strings.Replace(src, tc.replace[0], tc.replace[1], 1)
			}
			q := deployQ
			if tc.queries != nil {
				q = tc.queries
			}
			got := deployProblems(t, src, q)
			for _, sub := range tc.wantSubs {
				if !containsSub(got, sub) {
					t.Errorf("problems = %q, want one containing %q", got, sub)
				}
			}
		})
	}
}

func containsSub(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func TestNeededIndex(t *testing.T) {
	t.Parallel()
	eq := func(f string) hclcheck.QueryFilter { return hclcheck.QueryFilter{Field: f, Op: "=="} }
	tests := []struct {
		name string
		q    hclcheck.Query
		want string // "" for no composite index
	}{
		{"one field", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{eq("a")}}, ""},
		{"equalities only", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{eq("a"), {Field: "b", Op: "in"}}}, ""},
		{"order by name only", hclcheck.Query{Collection: "c", Order: []hclcheck.IndexField{{Field: "__name__"}}}, ""},
		{"equality on the ordered field", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{eq("a")}, Order: []hclcheck.IndexField{{Field: "a"}}}, ""},
		{"equality and order", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{eq("a")}, Order: []hclcheck.IndexField{{Field: "t", Desc: true}, {Field: "__name__", Desc: true}}}, "c(a ASCENDING, t DESCENDING)"},
		{"equality and range", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{eq("a"), {Field: "t", Op: ">="}}}, "c(a ASCENDING, t ASCENDING)"},
		{"range alone", hclcheck.Query{Collection: "c", Filters: []hclcheck.QueryFilter{{Field: "t", Op: "<"}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ""
			if ix, ok := hclcheck.NeededIndex(tc.q); ok {
				got = ix.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("NeededIndex() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryCalls(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"store/queries.go": `package store
func f(q Q) { q.Where("declared", "==", 1) }
`,
		"store/store.go": `package store
const field = "state"
func g(q Q, d D) {
	q.Where(d.Field, "==", 1)
	q.Where("owner", "==", 1)
	q.OrderBy(field, 0)
	q.OrderBy(firestore.DocumentID, 0)
}
`,
		"store/store_test.go": `package store
func h(q Q) { q.Where("in_test", "==", 1) }
`,
	})
	got, err := hclcheck.QueryCalls(dir)
	if err != nil {
		t.Fatalf("QueryCalls() error = %v", err)
	}
	for i := range got {
		got[i] = got[i][len(dir)+1:]
	}
	want := []string{"store/store.go:5", "store/store.go:6", "store/store.go:7"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("QueryCalls() (-want +got):\n%s", diff)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	md := "# Config\n\n| variable | default | meaning |\n|---|---|---|\n" +
		"| `NODEBATCH_A` | required | a |\n" +
		"| `NODEBATCH_B` / `NODEBATCH_C` | `5` / `10` | b and c |\n" +
		"| `NODEBATCH_D` | unset | d |\n" +
		"not a table `NODEBATCH_E`\n" +
		"| `NODEBATCH_A` | `x` (in another part) | a again |\n"
	got := hclcheck.ConfigDefaults([]byte(md))
	want := map[string]string{
		"NODEBATCH_A": "`x` (in another part)",
		"NODEBATCH_B": "`5` / `10`",
		"NODEBATCH_C": "`5` / `10`",
		"NODEBATCH_D": "unset",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConfigDefaults() (-want +got):\n%s", diff)
	}
}

func TestCheckSettings(t *testing.T) {
	t.Parallel()
	code := &hclcheck.Code{Env: map[string]string{
		"NODEBATCH_SET": "main.go:1", "NODEBATCH_DEFAULTED": "main.go:2", "NODEBATCH_REQUIRED": "main.go:3",
		"NODEBATCH_UNDOCUMENTED": "main.go:4", "PORT": "main.go:5",
	}}
	vars := []hclcheck.EnvVar{
		{Resource: "google_cloud_run_v2_service.relay", Name: "NODEBATCH_SET"},
		{Resource: "google_cloud_run_v2_service.other", Name: "NODEBATCH_REQUIRED"},
	}
	defaults := map[string]string{"NODEBATCH_DEFAULTED": "`1`", "NODEBATCH_REQUIRED": "required"}
	got := messages(hclcheck.CheckSettings("google_cloud_run_v2_service.relay", vars, code, defaults))
	want := []string{
		`google_cloud_run_v2_service.relay: NODEBATCH_REQUIRED (read at main.go:3) has no default ("required" in docs/config.md) and google_cloud_run_v2_service.relay does not set it`,
		"google_cloud_run_v2_service.relay: NODEBATCH_UNDOCUMENTED (read at main.go:4) is neither set by google_cloud_run_v2_service.relay nor documented with a default in docs/config.md",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CheckSettings() (-want +got):\n%s", diff)
	}
}

func TestEnvAssignment(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"one.go":  "package p\nvar e = []string{\"A=1\", \"NODEBATCH_UI_FEATURES=cancel,retry\"}\n",
		"none.go": "package p\nvar e = []string{\"A=1\"}\n",
		"two.go":  "package p\nvar e = []string{\"NODEBATCH_UI_FEATURES=a\", \"NODEBATCH_UI_FEATURES=b\"}\n",
	})
	for file, want := range map[string]string{"one.go": "cancel,retry", "none.go": "(unset)"} {
		got, err := hclcheck.EnvAssignment(dir+"/"+file, "NODEBATCH_UI_FEATURES")
		if err != nil || got != want {
			t.Errorf("EnvAssignment(%s) = %q, %v, want %q, nil", file, got, err, want)
		}
	}
	if _, err := hclcheck.EnvAssignment(dir+"/two.go", "NODEBATCH_UI_FEATURES"); err == nil {
		t.Error("EnvAssignment(two different values) error = nil, want an error")
	}
}
