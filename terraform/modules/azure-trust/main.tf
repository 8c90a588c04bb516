# Make Entra ID trust Legate's issuer for exactly the subjects Legate presents: an
# application with one federated identity credential per target (issuer, subject
# `target/<name>`, audience api://AzureADTokenExchange). Grant the application's service
# principal the Azure roles it needs (azurerm_role_assignment, see the example).

data "azuread_client_config" "current" {}

resource "azuread_application" "legate" {
  display_name     = var.application_display_name
  owners           = length(var.owners) > 0 ? var.owners : [data.azuread_client_config.current.object_id]
  sign_in_audience = "AzureADMyOrg"
}

resource "azuread_service_principal" "legate" {
  client_id = azuread_application.legate.client_id
  owners    = length(var.owners) > 0 ? var.owners : [data.azuread_client_config.current.object_id]
}

resource "azuread_application_federated_identity_credential" "target" {
  # checkov:skip=CKV_AZURE_249:the check reads every federated credential as a GitHub Actions one and wants a `repo:<owner>/<name>:…` subject; the issuer here is Legate and the subject the exact `target/<name>` (no wildcard: Entra compares it byte for byte)
  for_each = var.targets

  application_id = azuread_application.legate.id
  display_name   = local.credential_names[each.key]
  description    = "Legate target ${each.key}"
  issuer         = var.issuer_url
  subject        = local.subjects[each.key]
  audiences      = [local.audience]
}
