output "batch_url" {
  description = "run.app URL of the batch function (the API: POST {batch_url}/v1/batches). Also the audience of scheduler tokens. Its cloudfunctions.net URL (batch_function_url) serves the same function."
  value       = local.batch_url
  depends_on  = [google_cloudfunctions2_function.batch]
}

output "batch_function_url" {
  description = "cloudfunctions.net URL of the batch function, as the Cloud Functions API reports it (same function as batch_url)."
  value       = google_cloudfunctions2_function.batch.url
}

output "patch_url" {
  description = "run.app URL of the patch function (invoked only by the push subscription, with tokens for this audience)."
  value       = local.patch_url
  depends_on  = [google_cloudfunctions2_function.patch]
}

output "deadletter_url" {
  description = "run.app URL of the dead-letter function (invoked only by the dead-letter push subscription, with tokens for this audience)."
  value       = local.deadletter_url
  depends_on  = [google_cloudfunctions2_function.deadletter]
}

output "relay_url" {
  description = "URL of the relay: the web UI and the WebSocket progress stream."
  value       = google_cloud_run_v2_service.relay.uri
}

output "topic" {
  description = "Pub/Sub topic of per-node events."
  value       = google_pubsub_topic.node_patch.id
}

output "dead_letter_topic" {
  description = "Pub/Sub dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "global_patch_cap" {
  description = "Most node patches in flight against the API server across all batches: patch_max_instances x patch_concurrency."
  value       = var.patch_max_instances * var.patch_concurrency
}

output "scheduler_service_account" {
  description = "Service account whose Google-signed tokens the batch function accepts (put it in NODEBATCH_SCHEDULER_ALLOWLIST elsewhere too)."
  value       = google_service_account.scheduler.email
}

output "kubeconfig_secrets" {
  description = "Secret Manager secrets to add kubeconfig versions to (gcloud secrets versions add NAME --data-file=FILE)."
  value       = local.kubeconfig_secret
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job IDs (gcloud scheduler jobs run ID --location REGION fires one now)."
  value       = [for j in google_cloud_scheduler_job.batch : j.name]
}
