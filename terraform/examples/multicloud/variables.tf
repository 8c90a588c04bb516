variable "legate_public_url" {
  description = "Legate's `[server] public_url`, reachable from the three clouds over HTTPS with a publicly trusted certificate."
  type        = string
}

variable "aws_account_id" {
  description = "The AWS account the deploy role lives in."
  type        = string
}

variable "aws_region" {
  description = "The AWS region of the provider and of Legate's STS calls."
  type        = string
  default     = "us-east-1"
}

variable "gcp_project_id" {
  description = "The Google Cloud project holding the pool, the provider and the deployer service account."
  type        = string
}

variable "gcp_project_number" {
  description = "The number of gcp_project_id."
  type        = string
}

variable "azure_tenant_id" {
  description = "The Entra tenant (directory) id."
  type        = string
}

variable "azure_subscription_id" {
  description = "The Azure subscription the deploy application gets a role on."
  type        = string
}

variable "azure_role" {
  description = "The Azure role granted on the subscription to the deploy application."
  type        = string
  default     = "Reader"
}
