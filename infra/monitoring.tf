# Observability (issue 19, docs/observability.md): every service sends OTLP
# traces and metrics to Google's Telemetry API with application default
# credentials; a dashboard and alert policies read the metrics as that API
# stores them (prometheus_target resource, metric types
# prometheus.googleapis.com/NAME/KIND, queried here in PromQL).

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify; empty: the policies fire without notifying."
  type        = list(string)
  default     = []
}

variable "trace_sample_ratio" {
  description = "Share of batches traced (OTEL_TRACES_SAMPLER_ARG of parentbased_traceidratio): a sampled batch is traced whole, its submit and every node."
  type        = number
  default     = 0.1

  validation {
    condition     = var.trace_sample_ratio >= 0 && var.trace_sample_ratio <= 1
    error_message = "trace_sample_ratio must be between 0 and 1."
  }
}

variable "alert_failure_ratio" {
  description = "Alert when more than this share of node patches fail over 15 minutes."
  type        = number
  default     = 0.05
}

locals {
  # The standard OTEL_* variables every service reads (shared/telemetry).
  # OTEL_METRICS_EXPORTER=otlp also turns the local /metrics route off.
  telemetry_env = {
    OTEL_EXPORTER_OTLP_ENDPOINT = "https://telemetry.googleapis.com"
    OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
    OTEL_METRICS_EXPORTER       = "otlp"
    OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
    OTEL_TRACES_SAMPLER_ARG     = tostring(var.trace_sample_ratio)
    # prometheus_target needs a location: the region the services run in.
    OTEL_RESOURCE_ATTRIBUTES = "cloud.region=${var.region}"
    GOOGLE_CLOUD_PROJECT     = var.project_id
  }
  telemetry_writers = {
    batch      = google_service_account.batch.email
    patch      = google_service_account.patch.email
    deadletter = google_service_account.deadletter.email
    relay      = google_service_account.relay.email
  }
  # PromQL over the metric names as they arrive through OTLP (UTF-8 names
  # keep their dots: {"nodebatch.node.patches"}).
  promql = {
    throughput    = "sum by (\"nodebatch.outcome\") (rate({\"nodebatch.node.patches\"}[5m]))"
    failures      = "sum by (\"nodebatch.reason_class\") (rate({\"nodebatch.node.patches\", \"nodebatch.outcome\"=\"failed\"}[5m]))"
    latency_p95   = "histogram_quantile(0.95, sum by (le) (rate({\"nodebatch.node.patch.duration\"}[5m])))"
    dead_letters  = "sum(increase({\"nodebatch.events.dead_lettered\"}[10m]))"
    connections   = "sum({\"nodebatch.relay.connections\"})"
    redeliveries  = "sum(rate({\"nodebatch.node.redeliveries\"}[5m]))"
    failure_ratio = "sum(rate({\"nodebatch.node.patches\", \"nodebatch.outcome\"=\"failed\"}[15m])) / clamp_min(sum(rate({\"nodebatch.node.patches\"}[15m])), 1e-9)"
  }
}

resource "google_project_iam_member" "trace_writer" {
  for_each = local.telemetry_writers
  project  = var.project_id
  role     = "roles/cloudtrace.agent"
  member   = "serviceAccount:${each.value}"
}

resource "google_project_iam_member" "metric_writer" {
  for_each = local.telemetry_writers
  project  = var.project_id
  role     = "roles/monitoring.metricWriter"
  member   = "serviceAccount:${each.value}"
}

resource "google_monitoring_dashboard" "nodebatch" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${var.name_prefix}: batches"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, w in [
          { title = "Node patches per second, by outcome", q = local.promql.throughput },
          { title = "Failed node patches per second, by reason class", q = local.promql.failures },
          { title = "Node patch latency p95 (s)", q = local.promql.latency_p95 },
          { title = "Dead-lettered events (10 min)", q = local.promql.dead_letters },
          { title = "Relay WebSocket connections", q = local.promql.connections },
          { title = "Redeliveries per second", q = local.promql.redeliveries },
          ] : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = w.title
            xyChart = {
              dataSets = [{
                plotType        = "LINE"
                timeSeriesQuery = { prometheusQuery = w.q }
              }]
            }
          }
        }
      ]
    }
  })
  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: node events dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content   = "Node events exhausted their deliveries and were recorded failed by the dead-letter function. docs/reliability.md; the batch's trace and logs name the nodes."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "dead letters > 0"
    condition_prometheus_query_language {
      query    = "${local.promql.dead_letters} > 0"
      duration = "0s"
    }
  }
  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "failure_ratio" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: node patch failure ratio"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content   = "More than ${var.alert_failure_ratio * 100}% of node patches failed over 15 minutes. The dashboard splits failures by reason class."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "failure ratio > ${var.alert_failure_ratio}"
    condition_prometheus_query_language {
      query    = "(${local.promql.failure_ratio}) > ${var.alert_failure_ratio}"
      duration = "300s"
    }
  }
  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "relay_restarts" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: relay restarts"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content   = "The relay's container started more than 3 times in 30 minutes (crash loop or forced restarts): WebSocket clients reconnect each time."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "relay container starts > 3 in 30 min"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${local.relay_name}\" AND metric.type = \"run.googleapis.com/container/startup_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = 3
      duration        = "0s"
      aggregations {
        alignment_period     = "1800s"
        per_series_aligner   = "ALIGN_COUNT"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  depends_on = [google_project_service.api]
}
