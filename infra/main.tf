# nodebatch on Google Cloud: three Cloud Run functions (gen2: batch, patch,
# dead-letter) joined by ordered Pub/Sub push subscriptions, Firestore for
# state, the relay on Cloud Run and Cloud Scheduler jobs that start batches.
# See docs/deploy.md.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  repo_root = var.source_dir != "" ? var.source_dir : "${path.module}/.."

  batch_name = "${var.name_prefix}-batch"
  patch_name = "${var.name_prefix}-patch"
  relay_name = "${var.name_prefix}-relay"

  deadletter_name = "${var.name_prefix}-deadletter"

  # Each function's deterministic run.app URL
  # (https://SERVICE-PROJECT_NUMBER.REGION.run.app; a gen2 function's Cloud
  # Run service has the function's name). It is the URL Cloud Run checks an
  # ID token's audience against (docs/deploy.md, "Token audiences"), so every
  # push subscription and scheduler job sends to it and mints tokens for it,
  # and the batch function, which checks scheduler tokens itself, is told the
  # same value. Known before the function exists, which breaks the cycle "the
  # function's env names its own URL".
  batch_url      = "https://${local.batch_name}-${data.google_project.this.number}.${var.region}.run.app"
  patch_url      = "https://${local.patch_name}-${data.google_project.this.number}.${var.region}.run.app"
  deadletter_url = "https://${local.deadletter_name}-${data.google_project.this.number}.${var.region}.run.app"

  topic_name       = "${var.name_prefix}-node-patch"
  dead_letter_name = "${var.name_prefix}-node-patch-dead-letter"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Where the kubeconfig secret is mounted in each function; KUBECONFIG points at the file.
  kube_mount = "/secrets/kube"
  kube_file  = "kubeconfig"

  # The cluster identities. Neither holds a right on nodes of its own: each
  # may only impersonate the person a call is for (constrained
  # impersonation), and verbs are the node verbs it may use while doing so:
  # role is its ClusterRole in infra/k8s/ (impersonate-on:user-info:VERB on
  # nodes; infra/infra_test.go checks the two agree), and infra/hclcheck
  # compares what each workload mounts with what its code calls.
  kube_identity = {
    impersonator = { secret = var.impersonator_kubeconfig_secret, role = "nodebatch-impersonator", verbs = ["get", "list", "patch"] }
    viewer       = { secret = var.relay_kubeconfig_secret, role = "nodebatch-impersonator-viewer", verbs = ["list"] }
  }

  # Which identity each workload mounts. The batch function lists nodes as
  # the caller and sends the preview's server-side dry run (a patch) as the
  # caller; the patch function gets and merge-patches nodes as the batch's
  # requester; the dead-letter function GETs a node as the requester when an
  # intent is pending; the relay lists nodes for the UI as the signed-in
  # user (relay/cmd/relay), so it gets the viewer, which may impersonate for
  # nothing else.
  kubeconfig_secret = {
    batch      = local.kube_identity.impersonator.secret
    patch      = local.kube_identity.impersonator.secret
    deadletter = local.kube_identity.impersonator.secret
    relay      = local.kube_identity.viewer.secret
  }

  # Each workload's runtime identity (one service account each).
  runtime_member = {
    batch      = google_service_account.batch.member
    patch      = google_service_account.patch.member
    deadletter = google_service_account.deadletter.member
    relay      = google_service_account.relay.member
  }

  services = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "telemetry.googleapis.com", # OTLP traces and metrics (monitoring.tf)
    "cloudtrace.googleapis.com",
    "monitoring.googleapis.com",
  ])

  # What the functions' build account needs (provider example
  # cloudfunctions2_basic_builder; Cloud Run "build service account";
  # docs/deploy.md "Builds"): write build logs, push the image to Artifact
  # Registry, read the source Cloud Functions copies into its own bucket
  # gcf-v2-sources-PROJECT_NUMBER-REGION. That bucket is created by the
  # service during the first deployment, so no bucket-level grant can exist
  # before the first build: the read grant is project-wide, read-only.
  build_roles = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
  ])
}

resource "google_project_service" "api" {
  for_each           = local.services
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
