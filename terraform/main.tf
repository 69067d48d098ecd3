# SRE Agent Runtime on Cloud Run (v2 API): one always-on instance, a dedicated least-privilege
# service account, secrets from Secret Manager.
#
# The four secrets are created and versioned outside Terraform (deploy.sh, or the manual steps
# in docs/deployment.md), so their values never enter Terraform state; here they are data
# sources, and the service account may read exactly those four and nothing else.

locals {
  # The Secret Manager secret ids (names, not values) the runtime reads, one per secret
  # env var below. deploy.sh stores exactly these.
  secret_ids = toset(["llm-api-key", "pagerduty-api-token", "ops-auth-token", "pagerduty-routing-key"])

  # Every non-secret CONTRACT §2 variable, as the container sees it.
  plain_env = {
    LLM_MODEL                       = var.llm_model
    LLM_API_BASE_URL                = var.llm_api_base_url
    PAGERDUTY_ESCALATION_POLICY_ID  = var.pagerduty_escalation_policy_id
    PAGERDUTY_FROM_EMAIL            = var.pagerduty_from_email
    PAGERDUTY_EVENTS_URL            = var.pagerduty_events_url
    PAGERDUTY_API_URL               = var.pagerduty_api_url
    SERVICE_REGISTRY                = var.service_registry
    SCALING_LIMITS                  = var.scaling_limits
    SRE_PROMPT_PATH                 = var.sre_prompt_path
    INCIDENTS_DIR                   = var.incidents_dir
    MAX_CONCURRENT_ALERTS           = tostring(var.max_concurrent_alerts)
    ALERT_QUEUE_TTL_SECONDS         = tostring(var.alert_queue_ttl_seconds)
    MAX_QUEUE_SIZE                  = tostring(var.max_queue_size)
    DEDUP_WINDOW_SECONDS            = tostring(var.dedup_window_seconds)
    RESOLVE_GRACE_SECONDS           = tostring(var.resolve_grace_seconds)
    PAGERDUTY_AUTO_RESOLVE          = tostring(var.pagerduty_auto_resolve)
    MAX_TOKENS_PER_INCIDENT         = tostring(var.max_tokens_per_incident)
    MAX_TOKENS_PER_HOUR             = tostring(var.max_tokens_per_hour)
    AGENT_MAX_TURNS                 = tostring(var.agent_max_turns)
    AGENT_TIMEOUT_SECONDS           = tostring(var.agent_timeout_seconds)
    AGENT_MODE                      = var.agent_mode
    APPROVAL_TIMEOUT_SECONDS        = tostring(var.approval_timeout_seconds)
    PUBLIC_URL                      = var.public_url
    CONSOLE_IDENTITY_HEADER         = var.console_identity_header
    TOOL_OUTPUT_MAX_CHARS           = tostring(var.tool_output_max_chars)
    MAX_TOOL_CALLS_PER_TURN         = tostring(var.max_tool_calls_per_turn)
    PAGERDUTY_MAX_EVENTS_PER_MINUTE = tostring(var.pagerduty_max_events_per_minute)
    WEBHOOK_MAX_BODY_BYTES          = tostring(var.webhook_max_body_bytes)
    SHUTDOWN_GRACE_SECONDS          = tostring(var.shutdown_grace_seconds)
    CLOUD_PROVIDER                  = var.cloud_provider
    OPS_TIMEOUT_SECONDS             = tostring(var.ops_timeout_seconds)
    GCP_PROJECT_ID                  = var.gcp_project_id != "" ? var.gcp_project_id : (var.cloud_provider == "gcp" ? var.project_id : "")
    GCP_LOGGING_URL                 = var.gcp_logging_url
    GCP_MONITORING_URL              = var.gcp_monitoring_url
    LOG_LEVEL                       = upper(var.log_level)
  }

  # Read-only access for query_cloud_logs / query_cloud_metrics, granted only when those tools
  # are enabled.
  cloud_viewer_roles = var.cloud_provider == "gcp" ? toset(["roles/logging.viewer", "roles/monitoring.viewer"]) : toset([])
}

# --- identity -------------------------------------------------------------------------------

resource "google_service_account" "runtime" {
  account_id   = var.service_account_id
  display_name = "SRE Agent Runtime (${var.service_name})"
  description  = "Runs the SRE agent: reads its four secrets and, with CLOUD_PROVIDER=gcp, logs and metrics. Nothing else."
}

# --- secrets (values managed outside Terraform) ----------------------------------------------

data "google_secret_manager_secret" "runtime" {
  for_each  = local.secret_ids
  secret_id = each.value
}

# Secret-level grants, never project-level: the service account can read these four only.
resource "google_secret_manager_secret_iam_member" "runtime_access" {
  for_each  = data.google_secret_manager_secret.runtime
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_project_iam_member" "cloud_viewer" {
  for_each = local.cloud_viewer_roles
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

# --- the service ----------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "runtime" {
  name                = var.service_name
  location            = var.region
  deletion_protection = var.deletion_protection
  # Monitoring platforms (GCP, Datadog, New Relic, Grafana, SNS...) call from the internet.
  ingress = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = var.request_concurrency
    timeout                          = "60s" # webhooks answer 202 at once; agent runs are background work

    # Exactly one instance. The intake pipeline (dedup, one run per service, the global limit,
    # the priority queue, TTL) lives in process memory: a second instance would hold its own
    # queue and break every one of those rules (duplicate runs, two runs on one service,
    # twice the concurrency). min 1 keeps that instance warm so an alert is never lost or
    # delayed by a cold start. Raise max only with a shared intake backend (CONTRACT §8, Redis).
    scaling {
      min_instance_count = var.min_instance_count
      max_instance_count = 1
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU always allocated: agent runs continue in the background after the webhook's 202;
        # with request-based billing Cloud Run would throttle the CPU between requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "LLM_API_KEY"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.runtime["llm-api-key"].secret_id
            version = "latest"
          }
        }
      }

      env {
        name = "PAGERDUTY_API_TOKEN"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.runtime["pagerduty-api-token"].secret_id
            version = "latest"
          }
        }
      }

      env {
        name = "PAGERDUTY_ROUTING_KEY"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.runtime["pagerduty-routing-key"].secret_id
            version = "latest"
          }
        }
      }

      env {
        name = "OPS_AUTH_TOKEN"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.runtime["ops-auth-token"].secret_id
            version = "latest"
          }
        }
      }

      # The contract's default for WEBHOOK_AUTH_TOKEN is OPS_AUTH_TOKEN's value; it is a
      # credential, so it comes from the same secret rather than a plain variable.
      env {
        name = "WEBHOOK_AUTH_TOKEN"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.runtime["ops-auth-token"].secret_id
            version = "latest"
          }
        }
      }

      # /health touches no dependency: it answers as soon as the app serves.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 20
        http_get {
          path = "/health"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health"
          port = 8080
        }
      }
    }
  }

  # The secret grants must exist before a revision tries to resolve the secrets.
  depends_on = [google_secret_manager_secret_iam_member.runtime_access]
}

# Unauthenticated invoke on purpose: monitoring platforms cannot obtain Google ID tokens, so
# Cloud Run's IAM check cannot be the gate. The runtime authenticates every webhook itself
# (WEBHOOK_AUTH_TOKEN as ?auth_token=, Bearer or Basic; constant-time compare) and every
# POST /ops/* and /alerts/* with OPS_AUTH_TOKEN.
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  count    = var.allow_unauthenticated ? 1 : 0
  project  = google_cloud_run_v2_service.runtime.project
  location = google_cloud_run_v2_service.runtime.location
  name     = google_cloud_run_v2_service.runtime.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
