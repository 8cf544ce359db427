# The per-node event topic, the ORDERED push subscription that delivers it to
# the patch function (ordering key "{batch_id}/{lane}" gives the per-batch
# concurrency cap), its retry policy and dead-letter topic, and the IAM the
# Pub/Sub service agent needs to dead-letter.

resource "google_pubsub_topic" "node_patch" {
  name                       = local.topic_name
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dead_letter" {
  name                       = local.dead_letter_name
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "patch_push" {
  name                         = "${local.patch_name}-push"
  topic                        = google_pubsub_topic.node_patch.id
  enable_message_ordering      = true
  ack_deadline_seconds         = var.ack_deadline_seconds
  message_retention_duration   = var.message_retention
  enable_exactly_once_delivery = false # not available on push subscriptions

  push_config {
    # functions-framework-go turns a push envelope POSTed to
    # /projects/P/topics/T into the messagePublished CloudEvent the patch
    # function expects.
    # The function's run.app URL, for which the token is minted: Cloud Run
    # accepts a token only when its audience is the service's run.app URL
    # (or a custom audience; functions have none).
    push_endpoint = "${local.patch_url}/${google_pubsub_topic.node_patch.id}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.patch_url
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire
  }

  # The invoker grant names the function's service, so the subscription
  # starts pushing only once the function exists and may be invoked.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.patch_invoker,
    google_service_account_iam_member.push_token_creator,
  ]
}

# Dead-lettered messages go to the dead-letter function (the patch package's
# DeadLetter entry point), which records the node as failed ("delivery
# attempts exhausted") so the batch still finishes. Not ordered: each
# message is final on its own.
resource "google_pubsub_subscription" "dead_letter_push" {
  name                       = "${local.patch_name}-dead-letter-push"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention

  push_config {
    push_endpoint = "${local.deadletter_url}/${google_pubsub_topic.dead_letter.id}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.deadletter_url
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.deadletter_invoker,
    google_service_account_iam_member.push_token_creator,
  ]
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the
# dead-letter topic and acknowledge (subscribe) on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.patch_push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The service agent mints the push subscription's OIDC tokens as the push
# service account.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
