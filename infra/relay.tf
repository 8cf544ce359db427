# The relay: WebSocket progress streams, the web UI and a proxy to the batch
# API, on Cloud Run. A WebSocket lives at most one request timeout
# (relay_timeout); the UI reconnects and resubscribes, and the relay checks
# ownership on every subscription. It listens on $PORT (Cloud Run sets it),
# reads Firestore only, and lists nodes for the UI with the read-only
# cluster identity (local.kube_identity.reader).

resource "google_cloud_run_v2_service" "relay" {
  name                = local.relay_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  template {
    service_account                  = google_service_account.relay.email
    timeout                          = var.relay_timeout
    max_instance_request_concurrency = var.relay_concurrency
    session_affinity                 = true

    scaling {
      min_instance_count = var.relay_min_instances
      max_instance_count = var.relay_max_instances
    }

    volumes {
      name = "kube"
      secret {
        secret = local.kubeconfig_secret["relay"]
        items {
          version = var.kubeconfig_secret_version
          path    = local.kube_file
        }
      }
    }

    containers {
      image = var.relay_image

      ports {
        container_port = 8080
      }

      env {
        name  = "NODEBATCH_PROJECT"
        value = var.project_id
      }
      # OTLP to Google (monitoring.tf)
      env {
        name  = "OTEL_EXPORTER_OTLP_ENDPOINT"
        value = local.telemetry_env.OTEL_EXPORTER_OTLP_ENDPOINT
      }
      env {
        name  = "OTEL_EXPORTER_OTLP_PROTOCOL"
        value = local.telemetry_env.OTEL_EXPORTER_OTLP_PROTOCOL
      }
      env {
        name  = "OTEL_METRICS_EXPORTER"
        value = local.telemetry_env.OTEL_METRICS_EXPORTER
      }
      env {
        name  = "OTEL_TRACES_SAMPLER"
        value = local.telemetry_env.OTEL_TRACES_SAMPLER
      }
      env {
        name  = "OTEL_TRACES_SAMPLER_ARG"
        value = local.telemetry_env.OTEL_TRACES_SAMPLER_ARG
      }
      env {
        name  = "OTEL_RESOURCE_ATTRIBUTES"
        value = local.telemetry_env.OTEL_RESOURCE_ATTRIBUTES
      }
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = local.telemetry_env.GOOGLE_CLOUD_PROJECT
      }
      env {
        name  = "NODEBATCH_OIDC_ISSUER"
        value = var.oidc_issuer
      }
      env {
        name  = "NODEBATCH_OIDC_AUDIENCE"
        value = var.oidc_audience
      }
      env {
        name  = "NODEBATCH_ADMIN_CLAIM"
        value = var.admin_claim
      }
      env {
        name  = "NODEBATCH_ADMIN_VALUE"
        value = var.admin_value
      }
      env {
        name  = "NODEBATCH_API_URL"
        value = local.batch_url
      }
      # No NODEBATCH_UI_FEATURES: the UI's core controls (cancel, retry,
      # revert, history) are always served, here as with `make run`
      # (infra_test.go TestRelayServesTheLocalUI).
      env {
        name  = "KUBECONFIG"
        value = "${local.kube_mount}/${local.kube_file}"
      }

      volume_mounts {
        name       = "kube"
        mount_path = local.kube_mount
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        # Listeners and pings run between requests: keep the CPU allocated.
        cpu_idle = false
      }

      startup_probe {
        tcp_socket {
          port = 8080
        }
      }
    }
  }

  depends_on = [
    google_project_service.api,
    google_secret_manager_secret_iam_member.kubeconfig_accessor,
    time_sleep.iam_propagation,
  ]
}
