# Cluster access through Secret Manager: one kubeconfig per cluster
# identity (local.kube_identity: the functions' impersonator and the relay's
# viewer), each for a Kubernetes identity with no node right of its own that
# may only impersonate the requester (infra/k8s/; docs/deploy.md shows how
# to bind them and add the versions). Terraform
# creates the secrets, never their values, so no credential enters its state.

resource "google_secret_manager_secret" "kubeconfig" {
  for_each  = var.create_kubeconfig_secrets ? toset([for i in local.kube_identity : i.secret]) : toset([])
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

# Each workload's service account may read the kubeconfig it mounts
# (local.kubeconfig_secret), and no other.
resource "google_secret_manager_secret_iam_member" "kubeconfig_accessor" {
  for_each  = local.kubeconfig_secret
  secret_id = "projects/${var.project_id}/secrets/${each.value}"
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member[each.key]

  depends_on = [google_secret_manager_secret.kubeconfig]
}
