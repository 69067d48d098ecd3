# SRE Agent Runtime on Cloud Run (v2 API): an always-on instance, a dedicated least-privilege
# service account, secrets from Secret Manager and, optionally (enable_database), a Cloud SQL
# for PostgreSQL database that holds the runtime's state (CONTRACT §8) so that several
# instances can share it.
#
# The secrets are created and versioned outside Terraform (deploy.sh, or the manual steps in
# docs/deployment.md), so their values never enter Terraform state; here they are data
# sources, and the service account may read exactly those and nothing else. The database
# password is one of them: the SQL user and the `database-url` secret are made by deploy.sh.

locals {
  # The Secret Manager secret ids (names, not values) the runtime reads, one per secret
  # env var below. deploy.sh stores exactly these (database-url only with --database).
  secret_ids = setunion(
    ["llm-api-key", "pagerduty-api-token", "ops-auth-token", "pagerduty-routing-key"],
    var.enable_database ? ["database-url"] : [],
  )

  # With the database, the intake's state lives in PostgreSQL and is shared by every instance;
  # without it, in the one process (CONTRACT §8).
  database_instance_name = var.database_instance_name != "" ? var.database_instance_name : "${var.service_name}-db"
  # 0 or 1 connection names: the Cloud SQL volume and its mount exist only with the database.
  database_connections = google_sql_database_instance.state[*].connection_name

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
    STATE_BACKEND                   = var.enable_database ? "postgres" : "memory"
    RUN_LEASE_SECONDS               = tostring(var.run_lease_seconds)
  }

  # Read-only access for query_cloud_logs / query_cloud_metrics, granted only when those tools
  # are enabled.
  cloud_viewer_roles = var.cloud_provider == "gcp" ? toset(["roles/logging.viewer", "roles/monitoring.viewer"]) : toset([])
}

# --- identity -------------------------------------------------------------------------------

resource "google_service_account" "runtime" {
  account_id   = var.service_account_id
  display_name = "SRE Agent Runtime (${var.service_name})"
  description  = "Runs the SRE agent: reads its own secrets, with CLOUD_PROVIDER=gcp logs and metrics, with the database connects to it. Nothing else."
}

# --- secrets (values managed outside Terraform) ----------------------------------------------

data "google_secret_manager_secret" "runtime" {
  for_each  = local.secret_ids
  secret_id = each.value
}

# Secret-level grants, never project-level: the service account can read these secrets only.
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

# --- the database (enable_database) ---------------------------------------------------------

# Cloud SQL for PostgreSQL, reached only through the Cloud Run Cloud SQL connection (the
# Cloud SQL Auth Proxy behind a unix socket at /cloudsql): IAM-authorized (roles/cloudsql.client
# below) and TLS with client certificates all the way. The instance has a public IP because
# that connection needs either it or a VPC; with no authorized networks and connectors
# required, nothing but a Cloud SQL connector can reach it.
resource "google_sql_database_instance" "state" {
  # checkov:skip=CKV_GCP_60: public IP without authorized networks, connectors required: the Cloud Run Cloud SQL connection needs it or a VPC
  # checkov:skip=CKV_GCP_79: PostgreSQL 16, the major the runtime supports; a major upgrade is a deliberate in-place upgrade, not a default
  count               = var.enable_database ? 1 : 0
  name                = local.database_instance_name
  region              = var.region
  database_version    = "POSTGRES_16"
  deletion_protection = true # Terraform refuses to destroy it (also on enable_database = false)

  settings {
    edition                     = "ENTERPRISE" # PostgreSQL 16 defaults to Enterprise Plus, which has no small tiers
    tier                        = var.database_tier
    availability_type           = var.database_availability_type
    deletion_protection_enabled = true # the API refuses to delete it too
    disk_autoresize             = true

    # Only Cloud SQL connectors (the Cloud Run connection is one): no direct TCP clients.
    connector_enforcement = "REQUIRED"

    ip_configuration {
      ipv4_enabled   = true
      ssl_mode       = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
      server_ca_mode = "GOOGLE_MANAGED_INTERNAL_CA" # the per-instance CA Cloud Run's connection needs
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 14
      }
    }

    maintenance_window {
      day          = 7 # Sunday, 03:00 UTC: the runtime answers 503 + Retry-After while it restarts
      hour         = 3
      update_track = "stable"
    }

    # What the CIS benchmark (and checkov) ask of a PostgreSQL server's logs, one block each
    # (checkov does not expand a dynamic block here). log_statement "ddl" records the runtime's
    # migrations; log_duration is one short line per statement. cloudsql.enable_pgaudit only
    # makes pgAudit available: auditing starts with CREATE EXTENSION pgaudit (docs/deployment.md).
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_min_messages"
      value = "warning"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }
}

resource "google_sql_database" "state" {
  count    = var.enable_database ? 1 : 0
  name     = "sre_agent"
  instance = google_sql_database_instance.state[0].name
}

# roles/cloudsql.client exists only at project level; the condition narrows it to this
# instance.
resource "google_project_iam_member" "cloudsql_client" {
  count   = var.enable_database ? 1 : 0
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.runtime.email}"

  condition {
    title       = "only-${local.database_instance_name}"
    description = "Connect to the runtime's own Cloud SQL instance only."
    expression  = "resource.service == \"sqladmin.googleapis.com\" && resource.name == \"projects/${var.project_id}/instances/${local.database_instance_name}\""
  }
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

    # One instance unless the state is in PostgreSQL. In memory, the intake's rules (dedup,
    # one run per service, the global limit, the priority queue, TTL) hold per process: a
    # second instance would keep its own queue and break every one of them (duplicate runs,
    # two runs on one service, twice the concurrency); the precondition below refuses it.
    # min 1 keeps an instance warm so an alert is never lost or delayed by a cold start.
    scaling {
      min_instance_count = var.min_instance_count
      max_instance_count = var.max_instances
    }

    dynamic "volumes" {
      for_each = local.database_connections
      content {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [volumes.value]
        }
      }
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

      dynamic "volume_mounts" {
        for_each = local.database_connections
        content {
          name       = "cloudsql"
          mount_path = "/cloudsql" # DATABASE_URL: ...?host=/cloudsql/<connection name>
        }
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

      # The database's URL holds its password, so it is a secret too; only with the database.
      dynamic "env" {
        for_each = var.enable_database ? ["database-url"] : []
        content {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = data.google_secret_manager_secret.runtime[env.value].secret_id
              version = "latest"
            }
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

  # The secret grants must exist before a revision tries to resolve the secrets, and the
  # database and its grant before a revision connects.
  depends_on = [
    google_secret_manager_secret_iam_member.runtime_access,
    google_project_iam_member.cloudsql_client,
    google_sql_database.state,
  ]

  lifecycle {
    precondition {
      condition     = var.max_instances == 1 || var.enable_database
      error_message = "max_instances > 1 needs enable_database = true: with the state in memory every instance keeps its own queue, and dedup, one run per service and the global limit no longer hold."
    }
    precondition {
      condition     = var.min_instance_count <= var.max_instances
      error_message = "min_instance_count must not exceed max_instances."
    }
  }
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
