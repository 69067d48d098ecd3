# Inputs. Deployment settings first, then the optional database, then one variable per
# CONTRACT §2 setting with the contract's default. The secrets are not variables: their values
# live only in Secret Manager (deploy.sh stores them) and reach the container through
# secret_key_ref. STATE_BACKEND follows enable_database.

# --- deployment ---------------------------------------------------------------------------

variable "project_id" {
  description = "GCP project that hosts the service, its service account and its secrets."
  type        = string
}

variable "region" {
  description = "Cloud Run region."
  type        = string
  default     = "us-central1"
}

variable "service_name" {
  description = "Cloud Run service name (lowercase letters, digits and '-', at most 49 characters)."
  type        = string
  default     = "sre-agent-runtime"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be 1-49 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "service_account_id" {
  description = "account_id of the runtime's dedicated service account (6-30 characters)."
  type        = string
  default     = "sre-agent-runtime"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id must be 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "image" {
  description = "Container image to run, e.g. REGION-docker.pkg.dev/PROJECT/sre-agent/sre-agent-runtime:TAG."
  type        = string
}

variable "min_instance_count" {
  description = "Instances kept warm: 1 so an alert never waits on a cold start. 0 saves cost but risks slow or lost first deliveries."
  type        = number
  default     = 1

  validation {
    condition     = var.min_instance_count >= 0 && floor(var.min_instance_count) == var.min_instance_count
    error_message = "min_instance_count must be a whole number >= 0 (and at most max_instances)."
  }
}

variable "max_instances" {
  description = "Most instances Cloud Run may run. Above 1 only with enable_database: the state in memory holds for one process only."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instances >= 1 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number >= 1."
  }
}

variable "cpu" {
  description = "CPU limit of the container."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of the container."
  type        = string
  default     = "512Mi"
}

variable "request_concurrency" {
  description = "Concurrent requests per instance. Webhooks return 202 at once, so one instance absorbs bursts."
  type        = number
  default     = 80
}

variable "allow_unauthenticated" {
  description = "Grant roles/run.invoker to allUsers. Monitoring platforms cannot sign Google ID tokens; the runtime checks its own webhook token."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the Cloud Run service while true."
  type        = bool
  default     = false
}

# --- durable state (CONTRACT §8) -----------------------------------------------------------

variable "enable_database" {
  description = "Create a Cloud SQL for PostgreSQL database for the runtime's state (STATE_BACKEND=postgres, DATABASE_URL from the database-url secret) and allow max_instances > 1."
  type        = bool
  default     = false
}

variable "database_instance_name" {
  description = "Cloud SQL instance name. Empty: <service_name>-db. A deleted name cannot be reused for about a week."
  type        = string
  default     = ""

  validation {
    condition     = var.database_instance_name == "" || can(regex("^[a-z]([-a-z0-9]{0,78}[a-z0-9])?$", var.database_instance_name))
    error_message = "database_instance_name must be lowercase letters, digits or '-', starting with a letter."
  }
}

variable "database_tier" {
  description = "Cloud SQL machine type (Enterprise edition). db-custom-1-3840 is 1 dedicated vCPU, 3.75 GB; db-g1-small is cheaper, shared-core and without SLA."
  type        = string
  default     = "db-custom-1-3840"
}

variable "database_availability_type" {
  description = "ZONAL (one zone) or REGIONAL (a standby in a second zone with automatic failover, twice the cost)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.database_availability_type)
    error_message = "database_availability_type must be ZONAL or REGIONAL."
  }
}

# --- CONTRACT §2 (non-secret settings) ------------------------------------------------------

variable "service_registry" {
  description = "SERVICE_REGISTRY (required): name|url|critical,... of the services the agent may diagnose."
  type        = string

  validation {
    condition     = length(trimspace(var.service_registry)) > 0
    error_message = "service_registry must list at least one service as name|url|critical."
  }
}

variable "scaling_limits" {
  description = "SCALING_LIMITS: name|min|max|mode,... (mode application or cloud). Empty: no scaling allowed."
  type        = string
  default     = ""
}

variable "llm_model" {
  description = "LLM_MODEL: model id."
  type        = string
  default     = "gpt-4o"
}

variable "llm_api_base_url" {
  description = "LLM_API_BASE_URL: base URL of the OpenAI-compatible API."
  type        = string
  default     = "https://models.inference.ai.azure.com"
}

variable "pagerduty_escalation_policy_id" {
  description = "PAGERDUTY_ESCALATION_POLICY_ID: escalation policy for human handoff (empty: none)."
  type        = string
  default     = ""
}

variable "pagerduty_from_email" {
  description = "PAGERDUTY_FROM_EMAIL: From: header for PagerDuty REST incident updates/notes (empty: none)."
  type        = string
  default     = ""
}

variable "pagerduty_events_url" {
  description = "PAGERDUTY_EVENTS_URL: Events API v2 endpoint."
  type        = string
  default     = "https://events.pagerduty.com/v2/enqueue"
}

variable "pagerduty_api_url" {
  description = "PAGERDUTY_API_URL: PagerDuty REST API base."
  type        = string
  default     = "https://api.pagerduty.com"
}

variable "sre_prompt_path" {
  description = "SRE_PROMPT_PATH: system prompt file inside the image."
  type        = string
  default     = "/app/WINDSURF_SRE.md"
}

variable "incidents_dir" {
  description = "INCIDENTS_DIR: report directory inside the container (ephemeral on Cloud Run; reports are also logged as INCIDENT_REPORT)."
  type        = string
  default     = "/app/incidents"
}

variable "max_concurrent_alerts" {
  description = "MAX_CONCURRENT_ALERTS: concurrent agent runs, all services together (>= 1)."
  type        = number
  default     = 3
}

variable "alert_queue_ttl_seconds" {
  description = "ALERT_QUEUE_TTL_SECONDS: queued alerts older than this expire."
  type        = number
  default     = 600
}

variable "max_queue_size" {
  description = "MAX_QUEUE_SIZE: queued alerts held at most."
  type        = number
  default     = 1000
}

variable "dedup_window_seconds" {
  description = "DEDUP_WINDOW_SECONDS: how long a finished occurrence is remembered for dedup."
  type        = number
  default     = 900
}

variable "resolve_grace_seconds" {
  description = "RESOLVE_GRACE_SECONDS: how long an alert may keep firing after the agent resolved it before it is escalated as still_firing."
  type        = number
  default     = 300
}

variable "pagerduty_auto_resolve" {
  description = "PAGERDUTY_AUTO_RESOLVE: when the platform resolves an escalated incident, resolve its PagerDuty incident too."
  type        = bool
  default     = true
}

variable "max_tokens_per_incident" {
  description = "MAX_TOKENS_PER_INCIDENT: token budget per incident; 0 = unlimited."
  type        = number
  default     = 100000
}

variable "max_tokens_per_hour" {
  description = "MAX_TOKENS_PER_HOUR: rolling one-hour token ceiling; 0 = unlimited."
  type        = number
  default     = 0
}

variable "agent_max_turns" {
  description = "AGENT_MAX_TURNS: LLM turns per alert."
  type        = number
  default     = 20
}

variable "agent_timeout_seconds" {
  description = "AGENT_TIMEOUT_SECONDS: wall clock per alert."
  type        = number
  default     = 300
}

variable "agent_mode" {
  description = "AGENT_MODE: live; shadow (diagnose fully, withhold every write); approve (every remediation write waits for a human decision)."
  type        = string
  default     = "live"

  validation {
    condition     = contains(["live", "shadow", "approve"], var.agent_mode)
    error_message = "agent_mode must be live, shadow or approve."
  }
}

variable "approval_timeout_seconds" {
  description = "APPROVAL_TIMEOUT_SECONDS: in approve mode, how long a proposed write waits for a human decision."
  type        = number
  default     = 900
}

variable "public_url" {
  description = "PUBLIC_URL: the runtime's external base URL, for console links in PagerDuty events and reports (empty: no links)."
  type        = string
  default     = ""
}

variable "console_identity_header" {
  description = "CONSOLE_IDENTITY_HEADER: header an authenticating proxy (e.g. IAP: X-Goog-Authenticated-User-Email) sets to name the console user (empty: not named)."
  type        = string
  default     = ""
}

variable "tool_output_max_chars" {
  description = "TOOL_OUTPUT_MAX_CHARS: longer tool results are cut, with a marker."
  type        = number
  default     = 8000
}

variable "max_tool_calls_per_turn" {
  description = "MAX_TOOL_CALLS_PER_TURN: tool calls beyond this in one model message are answered with an error, not run."
  type        = number
  default     = 16
}

variable "pagerduty_max_events_per_minute" {
  description = "PAGERDUTY_MAX_EVENTS_PER_MINUTE: above this rate, escalations are coalesced into one storm incident."
  type        = number
  default     = 60
}

variable "webhook_max_body_bytes" {
  description = "WEBHOOK_MAX_BODY_BYTES: larger webhook bodies get 413."
  type        = number
  default     = 1048576
}

variable "shutdown_grace_seconds" {
  description = "SHUTDOWN_GRACE_SECONDS: SIGTERM waits this long for active runs (Cloud Run allows 10 s after SIGTERM)."
  type        = number
  default     = 30
}

variable "run_lease_seconds" {
  description = "RUN_LEASE_SECONDS: with the database, a run whose instance stopped renewing its lease this long is taken over by another instance."
  type        = number
  default     = 30

  validation {
    condition     = var.run_lease_seconds >= 1
    error_message = "run_lease_seconds must be at least 1."
  }
}

variable "cloud_provider" {
  description = "CLOUD_PROVIDER: none, gcp or aws; gcp enables the Cloud Logging/Monitoring tools and grants their viewer roles."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "gcp", "aws"], var.cloud_provider)
    error_message = "cloud_provider must be none, gcp or aws."
  }
}

variable "ops_timeout_seconds" {
  description = "OPS_TIMEOUT_SECONDS: timeout of each outbound /ops/* call."
  type        = number
  default     = 10
}

variable "gcp_project_id" {
  description = "GCP_PROJECT_ID: project the cloud tools query. Empty: project_id when cloud_provider is gcp."
  type        = string
  default     = ""
}

variable "gcp_logging_url" {
  description = "GCP_LOGGING_URL: Cloud Logging API base."
  type        = string
  default     = "https://logging.googleapis.com"
}

variable "gcp_monitoring_url" {
  description = "GCP_MONITORING_URL: Cloud Monitoring API base."
  type        = string
  default     = "https://monitoring.googleapis.com"
}

variable "log_level" {
  description = "LOG_LEVEL: DEBUG, INFO, WARNING, ERROR or CRITICAL."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], upper(var.log_level))
    error_message = "log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL."
  }
}
