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

  # The cluster identities, by what they may do to nodes. The verbs are those
  # of the ClusterRoles in docs/deploy.md; infra/hclcheck compares what each
  # function mounts with what its code uses (infra/infra_test.go).
  kube_identity = {
    reader  = { secret = var.batch_kubeconfig_secret, verbs = ["get", "list", "watch"] }
    patcher = { secret = var.patch_kubeconfig_secret, verbs = ["get", "list", "watch", "patch", "update"] }
  }

  # Which identity each workload mounts. The batch function reads nodes
  # (with inline_max > 0 its secret must hold a patcher instead); the patch
  # function patches; the dead-letter function only records nodes failed in
  # Firestore but its client still needs a kubeconfig to start, so it gets
  # the reader; the relay lists nodes for the UI.
  kubeconfig_secret = {
    batch      = local.kube_identity.reader.secret
    patch      = local.kube_identity.patcher.secret
    deadletter = local.kube_identity.reader.secret
    relay      = local.kube_identity.reader.secret
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
