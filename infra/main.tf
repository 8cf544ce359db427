# nodebatch on Google Cloud: two Cloud Run functions (gen2) joined by an
# ordered Pub/Sub push subscription, Firestore for state, the relay on Cloud
# Run and Cloud Scheduler jobs that start batches. See docs/deploy.md.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  repo_root = var.source_dir != "" ? var.source_dir : "${path.module}/.."

  batch_name = "${var.name_prefix}-batch"
  patch_name = "${var.name_prefix}-patch"
  relay_name = "${var.name_prefix}-relay"

  deadletter_name = "${var.name_prefix}-deadletter"

  # The gen2 function URL is deterministic; knowing it before the function
  # exists breaks the cycle "the function's env names its own URL" (the
  # audience of Cloud Scheduler's tokens).
  batch_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.batch_name}"

  topic_name       = "${var.name_prefix}-node-patch"
  dead_letter_name = "${var.name_prefix}-node-patch-dead-letter"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Where the kubeconfig secret is mounted in each function; KUBECONFIG points at the file.
  kube_mount = "/secrets/kube"
  kube_file  = "kubeconfig"

  kubeconfig_secret = {
    batch = var.batch_kubeconfig_secret
    patch = var.patch_kubeconfig_secret
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
}

resource "google_project_service" "api" {
  for_each           = local.services
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
