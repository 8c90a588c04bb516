# One workload (a GitHub Actions deploy job, say) reaching AWS, Google Cloud and Azure
# through one Legate: each cloud trusts Legate's issuer for one target, and the module
# outputs are Legate's `[[target]]` tables. Legate's policy decides which workloads may
# use each target (see docs/terraform.md).

module "aws_trust" {
  source = "../../modules/aws-trust"

  issuer_url = var.legate_public_url
  account_id = var.aws_account_id
  targets = {
    "aws-deploy" = {
      managed_policy_arns  = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
      max_session_duration = 3600
      region               = var.aws_region
    }
  }
}

resource "google_service_account" "deployer" {
  project      = var.gcp_project_id
  account_id   = "legate-deployer"
  display_name = "Deployer, impersonated by Legate's gcp-deploy target"
}

resource "google_project_iam_member" "deployer_reads_storage" {
  project = var.gcp_project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

module "gcp_trust" {
  source = "../../modules/gcp-trust"

  issuer_url     = var.legate_public_url
  project_id     = var.gcp_project_id
  project_number = var.gcp_project_number
  targets = {
    "gcp-deploy" = {
      service_account = google_service_account.deployer.email
    }
  }
}

module "azure_trust" {
  source = "../../modules/azure-trust"

  issuer_url               = var.legate_public_url
  application_display_name = "Legate deploy"
  targets = {
    "azure-deploy" = {
      scope = "https://management.azure.com/.default"
    }
  }
}

resource "azurerm_role_assignment" "deploy" {
  scope                = "/subscriptions/${var.azure_subscription_id}"
  role_definition_name = var.azure_role
  principal_id         = module.azure_trust.service_principal_object_id
}
