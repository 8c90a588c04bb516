output "legate_targets_toml" {
  description = "The three `[[target]]` tables, to append to legate.toml."
  value = join("\n\n", [
    module.aws_trust.legate_targets_toml,
    module.gcp_trust.legate_targets_toml,
    module.azure_trust.legate_targets_toml,
  ])
}
