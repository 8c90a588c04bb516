variable "issuer_url" {
  description = "Legate's `[server] public_url`: the `iss` of every assertion Legate sends to Google, exactly as written there (https://, no trailing slash, query or fragment)."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "The issuer_url must be an https:// URL without a trailing slash, query or fragment, exactly as Legate's `[server] public_url`."
  }
}

variable "project_id" {
  description = "The project holding the workload identity pool."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project_id must be 6 to 30 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "project_number" {
  description = "The number of project_id (`gcloud projects describe <id> --format='value(projectNumber)'`): Google names the provider, and Legate's assertion audience, by number."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{1,20}$", var.project_number))
    error_message = "The project_number is digits only."
  }
}

variable "pool_id" {
  description = "The workload identity pool's id."
  type        = string
  default     = "legate"

  validation {
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.pool_id)) && !startswith(var.pool_id, "gcp-")
    error_message = "The pool_id is 4 to 32 of a-z 0-9 - and does not start with gcp-."
  }
}

variable "provider_id" {
  description = "The OIDC provider's id within the pool."
  type        = string
  default     = "legate"

  validation {
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.provider_id)) && !startswith(var.provider_id, "gcp-")
    error_message = "The provider_id is 4 to 32 of a-z 0-9 - and does not start with gcp-."
  }
}

variable "create_pool" {
  description = "Create the pool; false to add the provider to an existing pool named pool_id."
  type        = bool
  default     = true
}

variable "targets" {
  description = <<-EOT
    One principal per Legate target, keyed by the target's name (Legate's `[[target]] name`;
    Google sees `google.subject` = `target/<name>`). Per target: service_account, the email
    of a service account the target impersonates (it gets roles/iam.workloadIdentityUser
    for the target's principal); null to use the federated token directly (grant roles to
    the principal yourself, the module outputs it); scopes for Legate (default Legate's,
    cloud-platform).
  EOT
  type = map(object({
    service_account = optional(string)
    scopes          = optional(list(string))
  }))

  validation {
    condition     = length(var.targets) > 0
    error_message = "At least one target is needed."
  }

  validation {
    condition     = alltrue([for name in keys(var.targets) : can(regex("^[A-Za-z0-9_-]{1,64}$", name))])
    error_message = "Target names are 1 to 64 characters from A-Z a-z 0-9 - _ (as Legate's `[[target]] name`)."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.service_account == null || can(regex("^[a-z0-9-]+@[a-z0-9.-]+\\.iam\\.gserviceaccount\\.com$", t.service_account))])
    error_message = "A service_account is a service account email, <name>@<project>.iam.gserviceaccount.com."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.scopes == null || (length(coalesce(t.scopes, [])) >= 1 && length(coalesce(t.scopes, [])) <= 20 && alltrue([for s in coalesce(t.scopes, []) : startswith(s, "https://")]))])
    error_message = "scopes are 1 to 20 https:// URLs."
  }
}

variable "display_name" {
  description = "The display name of the pool and of the provider (at most 32 characters)."
  type        = string
  default     = "Legate"

  validation {
    condition     = length(var.display_name) > 0 && length(var.display_name) <= 32
    error_message = "The display_name is 1 to 32 characters."
  }
}
