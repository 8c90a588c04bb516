variable "issuer_url" {
  description = "Legate's `[server] public_url`: the `iss` of every assertion Legate sends to AWS, exactly as written there (https://, no trailing slash, query or fragment)."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "The issuer_url must be an https:// URL without a trailing slash, query or fragment, exactly as Legate's `[server] public_url`."
  }
}

variable "audience" {
  description = "The `aud` of Legate's AWS assertions: the client id registered on the IAM OIDC provider. Legate's default (`assertion_audience`) is sts.amazonaws.com."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = length(var.audience) > 0 && length(var.audience) <= 255
    error_message = "The audience must be 1 to 255 characters."
  }
}

variable "create_oidc_provider" {
  description = "Create the IAM OIDC provider for issuer_url. An account holds one provider per issuer URL: set false and pass oidc_provider_arn when it already exists."
  type        = bool
  default     = true
}

variable "oidc_provider_arn" {
  description = "The ARN of an existing IAM OIDC provider for issuer_url (with create_oidc_provider = false)."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "The oidc_provider_arn must be arn:<partition>:iam::<12-digit account>:oidc-provider/<issuer host and path>."
  }
}

variable "thumbprint_list" {
  description = "TLS certificate thumbprints of issuer_url's host. AWS verifies public certificate authorities itself, so the default (empty) is right unless the host uses a private CA."
  type        = list(string)
  default     = []
}

variable "account_id" {
  description = "The 12-digit AWS account the roles are created in: it forms the role ARNs of the `[[target]]` snippets (a postcondition checks them against the created roles)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "The account_id must be 12 digits."
  }
}

variable "partition" {
  description = "The AWS partition of the role ARNs: aws, aws-cn or aws-us-gov."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["aws", "aws-cn", "aws-us-gov"], var.partition)
    error_message = "The partition must be aws, aws-cn or aws-us-gov."
  }
}

variable "targets" {
  description = <<-EOT
    One IAM role per Legate target, keyed by the target's name (Legate's `[[target]] name`;
    the role trusts only assertions whose `sub` is `target/<name>`). Per target:
    role_name (default legate-<name>), role_path, description, managed_policy_arns,
    inline_policies (name => policy JSON), max_session_duration (seconds, 3600 to 43200;
    also Legate's max_lifetime_secs), grant_shaping (allow sts:TagSession and
    sts:SetSourceIdentity, for targets with session_tags or source_identity),
    permissions_boundary, region (Legate's STS region, default us-east-1).
  EOT
  type = map(object({
    role_name            = optional(string)
    role_path            = optional(string, "/")
    description          = optional(string, "Assumed by Legate for one target")
    managed_policy_arns  = optional(list(string), [])
    inline_policies      = optional(map(string), {})
    max_session_duration = optional(number, 3600)
    grant_shaping        = optional(bool, false)
    permissions_boundary = optional(string)
    region               = optional(string)
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
    condition     = alltrue([for t in values(var.targets) : t.max_session_duration >= 3600 && t.max_session_duration <= 43200 && floor(t.max_session_duration) == t.max_session_duration])
    error_message = "max_session_duration is a whole number of seconds from 3600 to 43200 (IAM's range)."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", t.role_name))])
    error_message = "role_name is 1 to 64 characters from A-Z a-z 0-9 + = , . @ _ -."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : can(regex("^/([!-~]+/)?$", t.role_path))])
    error_message = "role_path is / or starts and ends with /."
  }

  validation {
    condition     = alltrue([for t in values(var.targets) : t.region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", t.region))])
    error_message = "region is an AWS region name such as eu-west-1."
  }
}

variable "tags" {
  description = "Tags on every resource the module creates."
  type        = map(string)
  default     = {}
}
