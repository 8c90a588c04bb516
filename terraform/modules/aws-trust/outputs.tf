output "oidc_provider_arn" {
  description = "The IAM OIDC provider trusting Legate's issuer."
  value       = var.create_oidc_provider ? aws_iam_openid_connect_provider.legate[0].arn : var.oidc_provider_arn
}

output "role_arns" {
  description = "The role ARN of each target, by target name."
  value       = { for name, role in aws_iam_role.target : name => role.arn }
}

output "subjects" {
  description = "The assertion subject each role trusts, by target name."
  value       = local.subjects
}

output "legate_targets" {
  description = "Legate's `[[target]]` table for each target, by target name."
  value       = { for name, role in aws_iam_role.target : name => local.target_toml[name] }
}

output "legate_targets_toml" {
  description = "Every target's `[[target]]` table, ready to append to legate.toml."
  value       = join("\n\n", [for name in sort(keys(aws_iam_role.target)) : local.target_toml[name]])
}
