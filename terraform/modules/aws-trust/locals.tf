# Everything the trust depends on is computed here, from the variables alone, so the
# offline tests (tests/iac) can evaluate it with Terraform without a provider.
locals {
  # IAM names an OIDC provider's condition keys after the issuer URL without https://.
  issuer_host = trimprefix(var.issuer_url, "https://")


  # The subject of Legate's assertions for a target.
  subjects = { for name, t in var.targets : name => "target/${name}" }

  actions = {
    for name, t in var.targets : name => (
      t.grant_shaping
      ? ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]
      : ["sts:AssumeRoleWithWebIdentity"]
    )
  }

  role_names = { for name, t in var.targets : name => coalesce(t.role_name, "legate-${name}") }
  role_arns  = { for name, t in var.targets : name => "arn:${var.partition}:iam::${var.account_id}:role${t.role_path}${local.role_names[name]}" }

  managed_policies = merge([
    for name, t in var.targets : { for arn in t.managed_policy_arns : "${name} ${arn}" => { target = name, arn = arn } }
  ]...)
  inline_policies = merge([
    for name, t in var.targets : { for policy, doc in t.inline_policies : "${name} ${policy}" => { target = name, name = policy, policy = doc } }
  ]...)

  # Legate's `[[target]]` table for each target (TOML basic strings are JSON strings).
  target_toml = {
    for name, t in var.targets : name => join("\n", compact([
      "[[target]]",
      "name = ${jsonencode(name)}",
      "kind = \"aws\"",
      "role_arn = ${jsonencode(local.role_arns[name])}",
      "max_lifetime_secs = ${t.max_session_duration}",
      t.region == null ? "" : "region = ${jsonencode(t.region)}",
      var.audience == "sts.amazonaws.com" ? "" : "assertion_audience = ${jsonencode(var.audience)}",
    ]))
  }
}
