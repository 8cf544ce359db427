# Every setting of the deployment. docs/deploy.md explains each one and the
# platform limits behind the defaults.

variable "project_id" {
  description = "Google Cloud project that hosts nodebatch."
  type        = string
}

variable "region" {
  description = "Region of the functions, the relay, Cloud Scheduler and the source bucket (for example europe-west1)."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, functions, topics, jobs). Lowercase letters, digits and dashes; at most 16 characters so service-account IDs stay within 30."
  type        = string
  default     = "nodebatch"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.name_prefix))
    error_message = "name_prefix must be 1-16 characters of [a-z0-9-], starting with a letter."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore (default) database: a multi-region (nam5, eur3) or a region. Cannot be changed once created."
  type        = string
  default     = "eur3"
}

variable "source_dir" {
  description = "Path of the repository root whose go.mod, functions/ and shared/ are zipped as the functions' source. Empty means the parent of this folder."
  type        = string
  default     = ""
}

variable "function_runtime" {
  description = "Cloud Run functions runtime ID for Go. Must support the go directive in go.mod (go 1.26): go126, or the newest go runtime listed by `gcloud functions runtimes list`."
  type        = string
  default     = "go126"
}

variable "batch_max_instances" {
  description = "Most instances of the batch (HTTP API) function."
  type        = number
  default     = 10
}

variable "batch_concurrency" {
  description = "Requests one batch-function instance serves at once. Above 1 requires batch_cpu >= 1."
  type        = number
  default     = 40
}

variable "batch_memory" {
  description = "Memory of one batch-function instance (Cloud Run quantity, for example 512Mi)."
  type        = string
  default     = "512Mi"
}

variable "batch_cpu" {
  description = "vCPUs of one batch-function instance (string, for example \"1\")."
  type        = string
  default     = "1"
}

variable "patch_max_instances" {
  description = "Most instances of the patch function. patch_max_instances x patch_concurrency is the GLOBAL cap of node patches in flight against the API server, across all batches."
  type        = number
  default     = 5
}

variable "patch_concurrency" {
  description = "Node patches one patch-function instance runs at once (max_instance_request_concurrency). See patch_max_instances for the global cap."
  type        = number
  default     = 20
}

variable "deadletter_max_instances" {
  description = "Most instances of the dead-letter function (records nodes whose deliveries were exhausted; it does not patch, so it is outside the global cap)."
  type        = number
  default     = 2
}

variable "patch_min_instances" {
  description = "Patch-function instances kept warm (0 scales to zero; 1 avoids a cold start at the first event of a batch)."
  type        = number
  default     = 0
}

variable "patch_memory" {
  description = "Memory of one patch-function instance."
  type        = string
  default     = "512Mi"
}

variable "patch_cpu" {
  description = "vCPUs of one patch-function instance (string). Must be >= 1 when patch_concurrency > 1."
  type        = string
  default     = "1"
}

variable "patch_timeout_seconds" {
  description = "Timeout of one patch-function request. Keep it below ack_deadline_seconds so Pub/Sub does not redeliver a message that is still being handled."
  type        = number
  default     = 50
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscription (10-600 s): how long Pub/Sub waits for the patch function's answer before it counts the push as failed."
  type        = number
  default     = 60
}

variable "retry_minimum_backoff" {
  description = "Push subscription retry policy: first redelivery delay after a failed push (0s-600s)."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Push subscription retry policy: longest redelivery delay (0s-600s)."
  type        = string
  default     = "300s"
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before Pub/Sub moves it to the dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "message_retention" {
  description = "How long the topics and the patch and dead-letter subscriptions keep messages (Pub/Sub allows 10 minutes to 31 days, 600s-2678400s; the default is 7 days)."
  type        = string
  default     = "604800s"

  validation {
    condition     = endswith(var.message_retention, "s") && try(tonumber(trimsuffix(var.message_retention, "s")) >= 600 && tonumber(trimsuffix(var.message_retention, "s")) <= 2678400, false)
    error_message = "message_retention must be seconds with an s suffix, from 600s (10 minutes) to 2678400s (31 days)."
  }
}

variable "max_nodes" {
  description = "NODEBATCH_MAX_NODES: most nodes one batch may touch."
  type        = number
  default     = 10000
}

variable "max_concurrency" {
  description = "NODEBATCH_MAX_CONCURRENCY: highest per-batch concurrency (lanes) a request may ask for; also the ceiling of the automatic choice."
  type        = number
  default     = 50
}

variable "inline_max" {
  description = "NODEBATCH_INLINE_MAX: batches of at most this many nodes are applied by the batch function itself (as the caller, which its impersonator identity allows). 0 sends every batch through Pub/Sub and the patch function."
  type        = number
  default     = 0
}

variable "kube_qps" {
  description = "NODEBATCH_KUBE_QPS: client-go QPS of each function instance (client-go's default of 5 would cap a batch at ~5 nodes/s)."
  type        = number
  default     = 100
}

variable "kube_burst" {
  description = "NODEBATCH_KUBE_BURST: client-go burst of each function instance."
  type        = number
  default     = 200
}

variable "create_kubeconfig_secrets" {
  description = "Create the Secret Manager secrets named by impersonator_kubeconfig_secret and relay_kubeconfig_secret (their versions are added out of band, so credentials never enter Terraform state). false: the secrets already exist."
  type        = bool
  default     = true
}

variable "impersonator_kubeconfig_secret" {
  description = "Secret Manager secret ID holding the kubeconfig of nodebatch's impersonator cluster identity (ClusterRole nodebatch-impersonator, infra/k8s/impersonator.yaml): no right on nodes of its own, it may only act as the requester. Mounted by the batch, patch and dead-letter functions."
  type        = string
  default     = "nodebatch-kubeconfig-impersonator"
}

variable "relay_kubeconfig_secret" {
  description = "Secret Manager secret ID holding the kubeconfig of the relay's cluster identity (ClusterRole nodebatch-impersonator-viewer, infra/k8s/impersonator-viewer.yaml): it may only list nodes as the signed-in user. Mounted by the relay only."
  type        = string
  default     = "nodebatch-kubeconfig-relay"
}

variable "kubeconfig_secret_version" {
  description = "Version of the kubeconfig secrets mounted into the functions (\"latest\" or a number; a number makes rotation an explicit apply)."
  type        = string
  default     = "latest"
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/R/connectors/NAME) the functions use to reach a cluster API server on a private address; null when the endpoint is public."
  type        = string
  default     = null
}

variable "oidc_issuer" {
  description = "NODEBATCH_OIDC_ISSUER: issuer URL(s), comma-separated, of the identity provider whose ID tokens users present (discovery at ISSUER/.well-known/openid-configuration)."
  type        = string
}

variable "oidc_audience" {
  description = "NODEBATCH_OIDC_AUDIENCE: the OAuth client ID user tokens must be issued to (their aud)."
  type        = string
}

variable "admin_claim" {
  description = "NODEBATCH_ADMIN_CLAIM: claim holding user roles; empty means the code default (roles)."
  type        = string
  default     = ""
}

variable "admin_value" {
  description = "NODEBATCH_ADMIN_VALUE: role value that makes a user an admin; empty means the code default (admin)."
  type        = string
  default     = ""
}

variable "batch_allow_unauthenticated" {
  description = "Grant roles/run.invoker on the batch function to allUsers. Users sign in with an OIDC provider that Cloud Run IAM does not know, so the function checks their tokens itself; set false only when every caller has a Google identity (then grant them run.invoker)."
  type        = bool
  default     = true
}

variable "relay_image" {
  description = "Container image of the relay (WebSocket progress + web UI), for example europe-west1-docker.pkg.dev/PROJECT/nodebatch/relay:v1."
  type        = string
}

variable "relay_min_instances" {
  description = "Relay instances kept warm (WebSocket clients reconnect to any instance)."
  type        = number
  default     = 1
}

variable "relay_max_instances" {
  description = "Most relay instances."
  type        = number
  default     = 3
}

variable "relay_concurrency" {
  description = "WebSocket connections (requests) one relay instance holds at once (Cloud Run allows up to 1000)."
  type        = number
  default     = 250
}

variable "relay_timeout" {
  description = "Cloud Run request timeout of the relay, which bounds one WebSocket connection (at most 3600s; the UI reconnects)."
  type        = string
  default     = "3600s"
}

variable "scheduled_batches" {
  description = <<-EOT
    Cloud Scheduler jobs that start batches. Key: job ID suffix. schedule is unix-cron in time_zone;
    body is the JSON request body of POST /v1/batches (docs/api.md); give it max_nodes, the
    blast-radius limit the confirmation guard asks of a large selector. Each run is retried up to
    retry_count times with the same X-CloudScheduler-ScheduleTime, which the batch function turns
    into an idempotency key, so a retry never starts a second batch.
  EOT
  type = map(object({
    schedule    = string
    time_zone   = optional(string, "UTC")
    description = optional(string, "")
    body        = string
    retry_count = optional(number, 3)
    paused      = optional(bool, false)
  }))
  default = {
    "spot-nightly-taint" = {
      schedule    = "0 22 * * *"
      description = "Every night at 22:00: taint every node with pool=spot NoSchedule."
      body        = "{\"selector\":\"pool=spot\",\"taints\":[\"nodebatch.dev/nightly=drain:NoSchedule\"],\"concurrency\":10,\"max_nodes\":200}"
    }
    "spot-morning-untaint" = {
      schedule    = "0 6 * * 1-5"
      time_zone   = "Europe/Berlin"
      description = "Weekday mornings at 06:00 Berlin time: remove the nightly taint again."
      body        = "{\"selector\":\"pool=spot\",\"taints\":[\"nodebatch.dev/nightly:NoSchedule-\"],\"max_nodes\":200}"
    }
  }
}

variable "scheduler_attempt_deadline" {
  description = "How long Cloud Scheduler waits for the batch function's answer to one attempt (15s-1800s)."
  type        = string
  default     = "180s"
}
