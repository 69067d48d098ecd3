output "service_url" {
  description = "Base URL of the SRE Agent Runtime."
  value       = google_cloud_run_v2_service.runtime.uri
}

output "webhook_url" {
  description = "URL for the GCP Cloud Monitoring webhook notification channel (append ?auth_token=...)."
  value       = "${google_cloud_run_v2_service.runtime.uri}/webhook/gcp"
}

output "service_account_email" {
  description = "The runtime's dedicated service account."
  value       = google_service_account.runtime.email
}

output "database_connection_name" {
  description = "With enable_database: the Cloud SQL instance connection name (project:region:instance), the socket under /cloudsql in DATABASE_URL. Otherwise null."
  value       = one(google_sql_database_instance.state[*].connection_name)
}
