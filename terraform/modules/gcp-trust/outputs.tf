output "provider_name" {
  description = "The provider's resource name, Legate's `workload_identity_provider`."
  value       = local.provider_name
}

output "audience" {
  description = "The audience Google expects in Legate's assertions."
  value       = local.audience
}

output "principals" {
  description = "The principal of each target, by target name: grant it roles directly for targets without a service_account."
  value       = local.principals
}

output "legate_targets" {
  description = "Legate's `[[target]]` table for each target, by target name."
  value       = local.target_toml
  depends_on  = [google_iam_workload_identity_pool_provider.legate, google_service_account_iam_member.workload_identity_user]
}

output "legate_targets_toml" {
  description = "Every target's `[[target]]` table, ready to append to legate.toml."
  value       = join("\n\n", [for name in sort(keys(local.target_toml)) : local.target_toml[name]])
  depends_on  = [google_iam_workload_identity_pool_provider.legate, google_service_account_iam_member.workload_identity_user]
}
