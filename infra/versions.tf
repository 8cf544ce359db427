# Provider and Terraform versions. google >= 6.0 has
# google_cloudfunctions2_function with secret volumes, Cloud Run v2 with
# scaling blocks and Firestore databases/indexes as resources.
# build_config.service_account of google_cloudfunctions2_function exists
# since google 5.x (magic-modules #10372), so 6.0 has everything used here.
terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    # time_sleep: wait for IAM grants to propagate before builds start.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
