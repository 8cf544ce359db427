# One service account per role, each with only what it uses. Resource-level
# bindings wherever the resource supports IAM; Firestore only has project
# level roles.

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "nodebatch function builds"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "batch" {
  account_id   = "${var.name_prefix}-batch"
  display_name = "nodebatch batch function"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "patch" {
  account_id   = "${var.name_prefix}-patch"
  display_name = "nodebatch patch function"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "deadletter" {
  account_id   = "${var.name_prefix}-deadletter"
  display_name = "nodebatch dead-letter function"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "push" {
  account_id   = "${var.name_prefix}-push"
  display_name = "nodebatch Pub/Sub push identity (invokes the patch function)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "nodebatch Cloud Scheduler identity (calls the batch function)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "relay" {
  account_id   = "${var.name_prefix}-relay"
  display_name = "nodebatch relay"
  depends_on   = [google_project_service.api]
}

# Builds: write logs, push images, read the source (local.build_roles).
resource "google_project_iam_member" "build" {
  for_each = local.build_roles
  project  = var.project_id
  role     = each.value
  member   = google_service_account.build.member
}

# IAM is eventually consistent: a grant can take minutes to be seen
# everywhere, and a build that starts before its account's grants are
# visible fails to fetch the source. The provider's builder example waits
# 60 s, and its acceptance test of a build account failed about half the
# time until the wait was doubled to 120 s (magic-modules #11909). The
# runtime accounts' secret grants wait too: a deployment checks them.
resource "time_sleep" "iam_propagation" {
  create_duration = "120s"

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.kubeconfig_accessor,
  ]
}

# Firestore: the functions read and write batches (the dead-letter function
# records nodes failed); the relay only reads.
resource "google_project_iam_member" "firestore_user" {
  for_each = {
    batch      = google_service_account.batch.member
    patch      = google_service_account.patch.member
    deadletter = google_service_account.deadletter.member
  }
  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value
}

resource "google_project_iam_member" "relay_firestore_viewer" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = google_service_account.relay.member
}

# The batch function publishes node events; nothing else may.
resource "google_pubsub_topic_iam_member" "batch_publisher" {
  topic  = google_pubsub_topic.node_patch.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.batch.member
}

# Only the push identity may invoke the patch and dead-letter functions.
resource "google_cloud_run_v2_service_iam_member" "patch_invoker" {
  name     = google_cloudfunctions2_function.patch.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_v2_service_iam_member" "deadletter_invoker" {
  name     = google_cloudfunctions2_function.deadletter.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# The scheduler identity may invoke the batch function even when it is not
# public; the function also checks its token against NODEBATCH_SCHEDULER_ALLOWLIST.
resource "google_cloud_run_v2_service_iam_member" "batch_scheduler_invoker" {
  name     = google_cloudfunctions2_function.batch.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# Users present tokens of an OIDC provider that Cloud Run IAM does not know:
# the function authenticates them itself (shared/auth).
resource "google_cloud_run_v2_service_iam_member" "batch_public" {
  count    = var.batch_allow_unauthenticated ? 1 : 0
  name     = google_cloudfunctions2_function.batch.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "relay_public" {
  name     = google_cloud_run_v2_service.relay.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
