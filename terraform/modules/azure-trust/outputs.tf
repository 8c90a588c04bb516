output "tenant_id" {
  description = "The directory (tenant) id: Legate's `tenant_id`."
  value       = local.tenant_id
}

output "client_id" {
  description = "The application's client id: Legate's `client_id`."
  value       = local.client_id
}

output "service_principal_object_id" {
  description = "The service principal's object id: the principal_id of Azure role assignments."
  value       = azuread_service_principal.legate.object_id
}

output "subjects" {
  description = "The assertion subject each federated credential matches, by target name."
  value       = local.subjects
}

output "legate_targets" {
  description = "Legate's `[[target]]` table for each target, by target name."
  value       = local.target_toml
  depends_on  = [azuread_application_federated_identity_credential.target]
}

output "legate_targets_toml" {
  description = "Every target's `[[target]]` table, ready to append to legate.toml."
  value       = join("\n\n", [for name in sort(keys(local.target_toml)) : local.target_toml[name]])
  depends_on  = [azuread_application_federated_identity_credential.target]
}
