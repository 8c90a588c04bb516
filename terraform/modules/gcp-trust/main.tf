# Make Google Cloud trust Legate's issuer for exactly the subjects Legate presents: a
# workload identity pool with an OIDC provider for `issuer_url`, and per target the
# right to impersonate a service account for `principal://…/subject/target/<name>`.

resource "google_iam_workload_identity_pool" "legate" {
  count = var.create_pool ? 1 : 0

  project                   = var.project_id
  workload_identity_pool_id = var.pool_id
  display_name              = var.display_name
  description               = "Legate (${var.issuer_url})"
}

resource "google_iam_workload_identity_pool_provider" "legate" {
  project                            = var.project_id
  workload_identity_pool_id          = var.create_pool ? google_iam_workload_identity_pool.legate[0].workload_identity_pool_id : var.pool_id
  workload_identity_pool_provider_id = var.provider_id
  display_name                       = var.display_name
  description                        = "Assertions Legate mints for its Google targets"
  attribute_mapping                  = local.attribute_mapping
  attribute_condition                = local.attribute_condition

  oidc {
    issuer_uri        = var.issuer_url
    allowed_audiences = [local.audience]
  }

  lifecycle {
    postcondition {
      condition     = self.name == local.provider_name
      error_message = "The provider's name differs from the one written in Legate's `[[target]]` snippet: check project_number."
    }
  }
}

resource "google_service_account_iam_member" "workload_identity_user" {
  for_each = local.impersonations

  service_account_id = "projects/-/serviceAccounts/${each.value.service_account}"
  role               = "roles/iam.workloadIdentityUser"
  member             = local.principals[each.key]

  depends_on = [google_iam_workload_identity_pool_provider.legate]
}
