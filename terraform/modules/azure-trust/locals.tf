# Everything the trust depends on is computed here; only the tenant and the client id
# come from Entra (the offline tests in tests/iac substitute example values for them).
locals {
  # The `aud` Entra requires of federated assertions, and Legate sends.
  audience = "api://AzureADTokenExchange"

  # The subject of Legate's assertions for a target.
  subjects = { for name, t in var.targets : name => "target/${name}" }

  credential_names = { for name, t in var.targets : name => "legate-${name}" }

  tenant_id = data.azuread_client_config.current.tenant_id
  client_id = azuread_application.legate.client_id

  # Legate's `[[target]]` table for each target (TOML basic strings are JSON strings).
  target_toml = {
    for name, t in var.targets : name => join("\n", [
      "[[target]]",
      "name = ${jsonencode(name)}",
      "kind = \"azure\"",
      "tenant_id = ${jsonencode(local.tenant_id)}",
      "client_id = ${jsonencode(local.client_id)}",
      "scope = ${jsonencode(t.scope)}",
    ])
  }
}
