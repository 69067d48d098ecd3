# Pinned toolchain. `terraform init` writes .terraform.lock.hcl: commit it once generated.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  # State is local by default (deploy.sh keeps one workspace per target service). For a team,
  # add `backend "gcs" { bucket = "..." prefix = "sre-agent" }` here.
}

provider "google" {
  project = var.project_id
  region  = var.region
}
