# Cloud Scheduler jobs that start batches (var.scheduled_batches). Each job
# calls POST /v1/batches with an OIDC token for the scheduler service
# account, audience = the batch function's URL; the function accepts it
# because that account is in NODEBATCH_SCHEDULER_ALLOWLIST. Retries of a run
# carry the same X-CloudScheduler-ScheduleTime, which the function turns into
# the batch's idempotency key (shared/schedule).

resource "google_cloud_scheduler_job" "batch" {
  for_each         = var.scheduled_batches
  name             = "${var.name_prefix}-${each.key}"
  region           = var.region
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = each.value.time_zone
  paused           = each.value.paused
  attempt_deadline = var.scheduler_attempt_deadline

  retry_config {
    retry_count          = each.value.retry_count
    min_backoff_duration = "10s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "${local.batch_url}/v1/batches"
    body        = base64encode(each.value.body)
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.batch_url
    }
  }

  depends_on = [
    google_project_service.api,
    google_cloud_run_v2_service_iam_member.batch_scheduler_invoker,
  ]
}
