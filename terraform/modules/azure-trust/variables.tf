variable "issuer_url" {
  description = "Legate's `[server] public_url`: the `iss` of every assertion Legate sends to Entra ID, exactly as written there (https://, no trailing slash, query or fragment)."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "The issuer_url must be an https:// URL without a trailing slash, query or fragment, exactly as Legate's `[server] public_url`."
  }
}

variable "application_display_name" {
  description = "The display name of the Entra application (app registration) Legate's Azure targets sign in as."
  type        = string
  default     = "Legate"

  validation {
    condition     = length(var.application_display_name) > 0 && length(var.application_display_name) <= 120
    error_message = "The application_display_name is 1 to 120 characters."
  }
}

variable "owners" {
  description = "Object ids of the application's owners; empty: the identity running Terraform."
  type        = list(string)
  default     = []
}

variable "targets" {
  description = <<-EOT
    One federated identity credential per Legate target, keyed by the target's name
    (Legate's `[[target]] name`; Entra matches `target/<name>` as the subject). Per target:
    scope, the one `<resource>/.default` scope Legate asks for (default Azure Resource
    Manager's). Entra allows at most 20 federated credentials per application.
  EOT
  type = map(object({
    scope = optional(string, "https://management.azure.com/.default")
  }))

  validation {
    condition     = length(var.targets) > 0
    error_message = "At least one target is needed."
  }

  validation {
    condition     = length(var.targets) <= 20
    error_message = "Entra allows at most 20 federated identity credentials per application: split the targets over several applications (one module instance each)."
  }

  validation {
    condition     = alltrue([for name in keys(var.targets) : can(regex("^[A-Za-z0-9_-]{1,64}$", name))])
    error_message = "Target names are 1 to 64 characters from A-Z a-z 0-9 - _ (as Legate's `[[target]] name`)."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : can(regex("^[a-z][a-z0-9+.-]*://[^ ]+/\\.default$", t.scope))])
    error_message = "A scope is one `<resource>/.default` scope, such as https://management.azure.com/.default."
  }
}
