# Everything the trust depends on is computed here, from the variables alone, so the
# offline tests (tests/iac) can evaluate it with Terraform without a provider.
locals {
  pool_name     = "projects/${var.project_number}/locations/global/workloadIdentityPools/${var.pool_id}"
  provider_name = "${local.pool_name}/providers/${var.provider_id}"

  # The `aud` of Legate's Google assertions: https://iam.googleapis.com/ + the provider.
  audience = "https://iam.googleapis.com/${local.provider_name}"

  # The subject of Legate's assertions for a target, and the principal Google maps it to.
  subjects   = { for name, t in var.targets : name => "target/${name}" }
  principals = { for name, t in var.targets : name => "principal://iam.googleapis.com/${local.pool_name}/subject/${local.subjects[name]}" }

  # google.subject is Legate's sub; the provider admits Legate's subjects for these
  # targets only (a CEL list of JSON strings), so an assertion for any other target of
  # the same Legate is refused by Google itself.
  attribute_mapping = {
    "google.subject"     = "assertion.sub"
    "attribute.workload" = "assertion.workload"
  }
  attribute_condition = "assertion.sub in ${jsonencode(sort(values(local.subjects)))}"

  impersonations = { for name, t in var.targets : name => t if t.service_account != null }

  # Legate's `[[target]]` table for each target (TOML basic strings are JSON strings).
  target_toml = {
    for name, t in var.targets : name => join("\n", compact([
      "[[target]]",
      "name = ${jsonencode(name)}",
      "kind = \"gcp\"",
      "workload_identity_provider = ${jsonencode(local.provider_name)}",
      t.service_account == null ? "" : "service_account = ${jsonencode(t.service_account)}",
      t.scopes == null ? "" : "scopes = ${jsonencode(t.scopes)}",
    ]))
  }
}
