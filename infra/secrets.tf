# Cluster access through Secret Manager: one kubeconfig per function, each
# for a Kubernetes identity with only the node rights that function needs
# (docs/deploy.md shows the RBAC and how to add the versions). Terraform
# creates the secrets, never their values, so no credential enters its state.

resource "google_secret_manager_secret" "kubeconfig" {
  for_each  = var.create_kubeconfig_secrets ? local.kubeconfig_secret : {}
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

# Each function's service account may read its own kubeconfig, and only it.
resource "google_secret_manager_secret_iam_member" "kubeconfig_accessor" {
  for_each  = local.kubeconfig_secret
  secret_id = var.create_kubeconfig_secrets ? google_secret_manager_secret.kubeconfig[each.key].id : "projects/${var.project_id}/secrets/${each.value}"
  role      = "roles/secretmanager.secretAccessor"
  member    = each.key == "batch" ? google_service_account.batch.member : google_service_account.patch.member
}

# The relay lists nodes for the UI with the batch function's (read-only) kubeconfig.
resource "google_secret_manager_secret_iam_member" "relay_kubeconfig_accessor" {
  secret_id = var.create_kubeconfig_secrets ? google_secret_manager_secret.kubeconfig["batch"].id : "projects/${var.project_id}/secrets/${local.kubeconfig_secret["batch"]}"
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.relay.member
}
