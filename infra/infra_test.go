package infra_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/infra/hclcheck"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// The repository root, seen from this folder.
const root = ".."

func load(t *testing.T) *hclcheck.Module {
	t.Helper()
	m, err := hclcheck.Load(".")
	if err != nil {
		t.Fatalf("Terraform configuration does not parse: %v", err)
	}
	return m
}

// TestConfigurationIsConsistent: every file parses, every reference resolves,
// every variable is used and documented, every provider declared.
func TestConfigurationIsConsistent(t *testing.T) {
	t.Parallel()
	if ps := load(t).Check(); len(ps) > 0 {
		t.Errorf("infra/*.tf has %d problems:\n%v", len(ps), hclcheck.Join(ps))
	}
}

// TestEntryPointsMatchCode: each function's entry_point is registered by the
// Go code with functions-framework-go.
func TestEntryPointsMatchCode(t *testing.T) {
	t.Parallel()
	m := load(t)
	eps, ps := m.EntryPoints()
	got := map[string]string{}
	for _, ep := range eps {
		got[ep.Resource] = ep.Name
	}
	want := map[string]string{
		"google_cloudfunctions2_function.batch":      "Batch",
		"google_cloudfunctions2_function.patch":      "Patch",
		"google_cloudfunctions2_function.deadletter": "DeadLetter",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EntryPoints() (-want +got):\n%s", diff)
	}
	code, err := hclcheck.ScanCode(root + "/functions")
	if err != nil {
		t.Fatal(err)
	}
	ps = append(ps, hclcheck.CheckEntryPoints(eps, code)...)
	if len(ps) > 0 {
		t.Errorf("entry points in infra/ and functions/ disagree:\n%v", hclcheck.Join(ps))
	}
}

// TestEnvMatchesCode: every environment variable the Terraform sets is one
// the code of that service reads.
func TestEnvMatchesCode(t *testing.T) {
	t.Parallel()
	m := load(t)
	vars, ps := m.EnvVars()
	functions, err := hclcheck.ScanCode(root+"/functions", root+"/shared")
	if err != nil {
		t.Fatal(err)
	}
	relay, err := hclcheck.ScanCode(root+"/relay", root+"/shared")
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string]*hclcheck.Code{
		"google_cloudfunctions2_function": functions,
		"google_cloud_run_v2_service":     relay,
	}
	ps = append(ps, hclcheck.CheckEnv(vars, readers)...)
	if len(ps) > 0 {
		t.Errorf("environment variables in infra/ that the code does not read:\n%v", hclcheck.Join(ps))
	}
	// Report, without failing, what the code reads and Terraform leaves to
	// defaults: a reviewer's checklist when a setting is added.
	set := map[string]bool{}
	for _, v := range vars {
		set[v.Name] = true
	}
	var unset []string
	for n := range functions.Env {
		if !set[n] {
			unset = append(unset, n)
		}
	}
	sort.Strings(unset)
	t.Logf("read by functions/ or shared/ but left to defaults in infra/: %v", unset)
}

// TestGlobalCapFromVariables: the patch function's instances and per-instance
// concurrency (whose product caps patches against the API server) come from
// variables, and the push subscription is ordered with a dead-letter policy.
func TestGlobalCapFromVariables(t *testing.T) {
	t.Parallel()
	m := load(t)
	want := map[string]string{
		"max_instance_count":               "var.patch_max_instances",
		"max_instance_request_concurrency": "var.patch_concurrency",
	}
	for _, b := range m.Resources("google_cloudfunctions2_function") {
		if b.Name != "patch" {
			continue
		}
		got := hclcheck.AttrRefs(b.Body, "service_config")
		for attr, ref := range want {
			if got[attr] != ref {
				t.Errorf("%s service_config.%s = %q, want %q", b.Address(), attr, got[attr], ref)
			}
		}
		return
	}
	t.Fatal("no google_cloudfunctions2_function.patch")
}

// TestFormatted: the files are formatted as `terraform fmt` would write them.
func TestFormatted(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("*.tf")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no *.tf files (%v)", err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = b
	}
	if bad := hclcheck.Unformatted(files); len(bad) > 0 {
		t.Errorf("not in canonical HCL format (run terraform fmt infra/): %v", bad)
	}
}

// TestScheduledBodiesAreValidRequests: the example scheduler jobs send bodies
// the batch function accepts (strict decode and full validation).
func TestScheduledBodiesAreValidRequests(t *testing.T) {
	t.Parallel()
	v, err := load(t).VariableDefault("scheduled_batches")
	if err != nil {
		t.Fatal(err)
	}
	if v.LengthInt() == 0 {
		t.Fatal("scheduled_batches has no example jobs")
	}
	for name, job := range v.AsValueMap() {
		body := job.GetAttr("body").AsString()
		var b request.Batch
		if e := request.Decode(strings.NewReader(body), &b); e != nil {
			t.Errorf("job %s: body %s does not decode: %v", name, body, e)
			continue
		}
		if _, e := b.Validate(request.DefaultLimits(), change.DefaultProtection()); e != nil {
			t.Errorf("job %s: body %s is refused: %v", name, body, e)
		}
	}
}

// TestSchedulerAudienceIsTheBatchURL: Cloud Scheduler's tokens are minted
// for the audience the batch function requires, and that audience is the
// URL the jobs call.
func TestSchedulerAudienceIsTheBatchURL(t *testing.T) {
	t.Parallel()
	m := load(t)
	var jobs int
	for _, b := range m.Resources("google_cloud_scheduler_job") {
		jobs++
		for _, ht := range hclcheck.Nested(b.Body, "http_target") {
			if got := hclcheck.AttrRefs(ht, "oidc_token")["audience"]; got != "local.batch_url" {
				t.Errorf("%s oidc_token.audience = %q, want local.batch_url", b.Address(), got)
			}
		}
	}
	if jobs == 0 {
		t.Fatal("no google_cloud_scheduler_job")
	}
	for _, b := range m.Resources("google_cloudfunctions2_function") {
		if b.Name != "batch" {
			continue
		}
		if got := hclcheck.AttrRefs(b.Body, "")["name"]; got != "local.batch_name" {
			t.Errorf("%s name = %q, want local.batch_name (local.batch_url is built from it)", b.Address(), got)
		}
		vars, _ := m.EnvVars()
		found := false
		for _, v := range vars {
			found = found || (v.Resource == b.Address() && v.Name == "NODEBATCH_SCHEDULER_AUDIENCE")
		}
		if !found {
			t.Errorf("%s does not set NODEBATCH_SCHEDULER_AUDIENCE", b.Address())
		}
	}
}

// TestSourceZipHoldsEveryImport: the functions' source zip holds go.mod,
// functions/ and shared/ only (functions.tf), so the function packages may
// import nothing else of this module.
func TestSourceZipHoldsEveryImport(t *testing.T) {
	t.Parallel()
	pkgs, err := hclcheck.ModuleImports(root, "github.com/nodebatch/nodebatch", "functions/batch", "functions/patch")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		if !strings.HasPrefix(p, "functions/") && !strings.HasPrefix(p, "shared/") {
			t.Errorf("function code imports %s, which infra/functions.tf leaves out of the source zip", p)
		}
		if strings.Contains(p, "/cmd/") || strings.Contains(p, "/testdata/") {
			t.Errorf("function code imports %s, which infra/functions.tf filters out of the source zip", p)
		}
	}
}

// buildRoles are what a function's build account needs: write build logs,
// push the image, read the source Cloud Functions copied into its
// gcf-v2-sources bucket (docs/deploy.md "Builds").
var buildRoles = []string{"roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectViewer"}

// TestBuildGrantsBeforeBuilds: every function builds as an account of its
// own holding buildRoles, and waits for those grants (and its secret
// grants) and two minutes of propagation before it is created (60 s was
// not enough for the provider's own test, magic-modules #11909).
func TestBuildGrantsBeforeBuilds(t *testing.T) {
	t.Parallel()
	if ps := load(t).CheckBuildGrants(buildRoles, 2*time.Minute); len(ps) > 0 {
		t.Errorf("function builds may start without their grants:\n%v", hclcheck.Join(ps))
	}
}

// clusterUses is what each workload's code does to nodes, every call as the
// person it is for (shared/kubeclient): the Batch entry point lists nodes to
// resolve selectors (functions/batch/handler.go) and sends the preview's
// server-side dry run, a patch (functions/batch/preview.go, through
// shared/nodepatch); Patch gets a node and merge-patches it
// (shared/nodepatch/nodepatch.go: every write is a merge patch, no update);
// DeadLetter GETs a node when its intent is pending (functions/runner); the
// relay lists nodes for the UI (relay/ui/nodes.go via relay/cmd/relay).
var clusterUses = map[string][]string{
	"Batch":                             {"list", "patch"},
	"Patch":                             {"get", "patch"},
	"DeadLetter":                        {"get"},
	"google_cloud_run_v2_service.relay": {"list"},
}

// TestOwnIdentities: every workload runs as its own service account and
// mounts the least cluster identity that covers what its code uses.
func TestOwnIdentities(t *testing.T) {
	t.Parallel()
	m := load(t)
	ws, ps := m.Workloads("kube_identity")
	got := map[string]string{}
	for _, w := range ws {
		got[w.Key] = w.Identity
	}
	want := map[string]string{"Batch": "impersonator", "Patch": "impersonator", "DeadLetter": "impersonator", "google_cloud_run_v2_service.relay": "viewer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Workloads() identities (-want +got):\n%s", diff)
	}
	ps = append(ps, m.CheckIdentities("kube_identity", clusterUses)...)
	if len(ps) > 0 {
		t.Errorf("identities:\n%v", hclcheck.Join(ps))
	}
}

// TestIndexesMatchQueries: infra/firestore.tf declares exactly the
// composite indexes the queries in shared/store/queries.go need.
func TestIndexesMatchQueries(t *testing.T) {
	t.Parallel()
	if ps := load(t).CheckIndexes(storeQueries()); len(ps) > 0 {
		t.Errorf("Firestore indexes and queries disagree:\n%v", hclcheck.Join(ps))
	}
}

func storeQueries() []hclcheck.Query {
	var out []hclcheck.Query
	for _, q := range store.Queries() {
		hq := hclcheck.Query{Name: q.Name, Collection: q.Collection}
		for _, f := range q.Filters {
			hq.Filters = append(hq.Filters, hclcheck.QueryFilter{Field: f.Field, Op: f.Op})
		}
		for _, o := range q.Order {
			hq.Order = append(hq.Order, hclcheck.IndexField{Field: o.Field, Desc: o.Dir == firestore.Desc})
		}
		out = append(out, hq)
	}
	return out
}

// TestQueriesAreDeclared: no Go code outside shared/store/queries.go names
// a Firestore query field itself, so the declarations the index check reads
// are every query there is.
func TestQueriesAreDeclared(t *testing.T) {
	t.Parallel()
	calls, err := hclcheck.QueryCalls(root+"/functions", root+"/shared", root+"/relay")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		t.Errorf("%s: a Firestore query built from a literal field; declare it in shared/store/queries.go and build it with Query.Apply", c)
	}
}

// TestAudiencesMatch: push subscriptions and scheduler jobs mint tokens for
// the run.app URL they call, and the batch function expects that audience
// on scheduler tokens.
func TestAudiencesMatch(t *testing.T) {
	t.Parallel()
	m := load(t)
	if n := len(m.Senders()); n != 3 {
		t.Errorf("Senders() = %d, want 3 (two push subscriptions, the scheduler jobs)", n)
	}
	if ps := m.CheckAudiences(map[string]string{"google_cloud_scheduler_job": "NODEBATCH_SCHEDULER_AUDIENCE"}); len(ps) > 0 {
		t.Errorf("audiences:\n%v", hclcheck.Join(ps))
	}
}

// TestSettingsSetOrDefaulted: every setting a service reads (found in the
// code of its Load functions, its constructor and main or entry point, and
// the shared packages they read settings with) is set by Terraform on that
// service or has a default in docs/config.md, so nothing runs in Google
// Cloud on a setting nobody chose. A new setting that is neither fails
// here (hclcheck's TestCheckSettings proves the check on a fixture).
func TestSettingsSetOrDefaulted(t *testing.T) {
	t.Parallel()
	vars, ps := load(t).EnvVars()
	md, err := os.ReadFile(root + "/docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	defaults := hclcheck.ConfigDefaults(md)
	functions := []string{"functions/config", "functions/deps", "shared/logging"}
	services := []struct {
		resource string
		dirs     []string
		reads    string // one setting the scan must find, so it cannot pass on nothing
	}{
		{"google_cloud_run_v2_service.relay", []string{"relay/config", "relay/service", "relay/cmd/relay", "shared/auth", "shared/logging"}, "NODEBATCH_RELAY_MAX_CONNS_PER_USER"},
		{"google_cloudfunctions2_function.batch", append([]string{"functions/batch", "shared/auth"}, functions...), "NODEBATCH_CONFIRM_OVER"},
		{"google_cloudfunctions2_function.patch", append([]string{"functions/patch"}, functions...), "NODEBATCH_CONFLICT_RETRIES"},
		{"google_cloudfunctions2_function.deadletter", append([]string{"functions/patch"}, functions...), "NODEBATCH_LOG_LEVEL"},
	}
	for _, s := range services {
		var dirs []string
		for _, d := range s.dirs {
			dirs = append(dirs, root+"/"+d)
		}
		code, err := hclcheck.ScanCode(dirs...)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := code.Env[s.reads]; !ok {
			t.Errorf("%s: scanning %v found no %s: the scan misses the service's settings", s.resource, s.dirs, s.reads)
		}
		ps = append(ps, hclcheck.CheckSettings(s.resource, vars, code, defaults)...)
	}
	if len(ps) > 0 {
		t.Errorf("settings:\n%v", hclcheck.Join(ps))
	}
}

// TestRelayServesTheLocalUI: the UI's core controls (cancel, retry, revert,
// history) are the product, served by the relay whatever its settings
// (relay/config.CoreFeatures), so neither Terraform nor make run (nor the
// in-process product) sets NODEBATCH_UI_FEATURES: Google Cloud serves the
// UI people use locally.
func TestRelayServesTheLocalUI(t *testing.T) {
	t.Parallel()
	const name = "NODEBATCH_UI_FEATURES"
	vars, _ := load(t).EnvVars()
	for _, v := range vars {
		if v.Name == name {
			t.Errorf("%s sets %s; the core controls need no setting", v.Resource, name)
		}
	}
	local, err := hclcheck.ScanCode(root+"/emulators/cmd/stack", root+"/emulators/product")
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := local.Env[name]; ok {
		t.Errorf("make run sets %s (%s); the core controls need no setting", name, at)
	}
}

// TestClusterRolesMatchIdentities: the ClusterRole each cluster identity of
// local.kube_identity is bound to (infra/k8s/, constrained impersonation)
// holds no node right of its own and may act as the requester for exactly
// the node verbs the identity lists (what the identity check assumes), and
// docs/deploy.md points at those manifests instead of defining roles of its
// own.
func TestClusterRolesMatchIdentities(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{}
	for _, name := range []string{"impersonator.yaml", "impersonator-viewer.yaml"} {
		b, err := os.ReadFile(filepath.Join("k8s", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	roles, err := hclcheck.ClusterRoles(files)
	if err != nil {
		t.Fatal(err)
	}
	m := load(t)
	if ps := m.CheckClusterRoles("kube_identity", roles); len(ps) > 0 {
		t.Errorf("infra/k8s ClusterRoles vs local.kube_identity:\n%v", hclcheck.Join(ps))
	}
	md, err := os.ReadFile(root + "/docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`kind:\s*ClusterRole\b`).Match(md) {
		t.Errorf("docs/deploy.md defines a ClusterRole itself; the roles live in infra/k8s/ only")
	}
	v, err := m.LocalValue("kube_identity")
	if err != nil {
		t.Fatal(err)
	}
	for id, obj := range v.AsValueMap() {
		role := obj.GetAttr("role").AsString()
		if !strings.Contains(string(md), role) {
			t.Errorf("docs/deploy.md does not name ClusterRole %s (local.kube_identity.%s)", role, id)
		}
	}
}

// TestNoLifecycleOnManagedObjects: no bucket lifecycle rule deletes the
// source zips Terraform manages (every plan after it would recreate them).
func TestNoLifecycleOnManagedObjects(t *testing.T) {
	t.Parallel()
	if ps := load(t).CheckManagedObjectLifecycle(); len(ps) > 0 {
		t.Errorf("lifecycle rules:\n%v", hclcheck.Join(ps))
	}
}

// TestMonitoringMatchesTelemetry: the dashboard's JSON is valid and each
// widget and alert condition queries (PromQL) only metrics that
// shared/telemetry defines, under the names the Telemetry API stores
// (the OpenTelemetry names, dots kept: docs/observability.md), and only
// their attributes; the alert policies notify var.notification_channels;
// and docs/observability.md's metric table lists exactly those
// instruments.
func TestMonitoringMatchesTelemetry(t *testing.T) {
	t.Parallel()
	var metrics []string
	for _, in := range telemetry.Instruments() {
		metrics = append(metrics, in.Name)
	}
	labels := append(telemetry.AttributeKeys(), "le") // le: a histogram's bucket bound
	qs, ps := load(t).MonitoringQueries()
	ps = append(ps, hclcheck.CheckQueries(qs, metrics, labels)...)
	if len(ps) > 0 {
		t.Errorf("infra/monitoring.tf's dashboard and alerts disagree with shared/telemetry:\n%v", hclcheck.Join(ps))
	}
	if len(qs) < 7 {
		t.Errorf("found %d PromQL queries in infra/monitoring.tf, want at least the dashboard's 6 widgets and 2 alert conditions", len(qs))
	}

	doc, err := os.ReadFile(filepath.Join(root, "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(nodebatch\\.[a-z0-9_.]+)` \\|")
	var listed []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		listed = append(listed, m[1])
	}
	sort.Strings(listed)
	if diff := cmp.Diff(metrics, listed); diff != "" {
		t.Errorf("docs/observability.md's metric table vs shared/telemetry's instruments (-code +doc):\n%s", diff)
	}
}
