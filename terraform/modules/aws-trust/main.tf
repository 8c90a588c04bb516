# Make AWS trust Legate's issuer for exactly the subjects Legate presents: an IAM OIDC
# provider for `issuer_url`, and per target a role that only `target/<name>` may assume.

resource "aws_iam_openid_connect_provider" "legate" {
  count = var.create_oidc_provider ? 1 : 0

  url             = var.issuer_url
  client_id_list  = [var.audience]
  thumbprint_list = var.thumbprint_list
  tags            = var.tags
}

data "aws_iam_policy_document" "trust" {
  for_each = var.targets

  statement {
    sid     = "LegateTarget"
    effect  = "Allow"
    actions = local.actions[each.key]

    principals {
      type        = "Federated"
      identifiers = [var.create_oidc_provider ? aws_iam_openid_connect_provider.legate[0].arn : var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:aud"
      values   = [var.audience]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer_host}:sub"
      values   = [local.subjects[each.key]]
    }
  }
}

resource "aws_iam_role" "target" {
  for_each = var.targets

  name                 = local.role_names[each.key]
  path                 = each.value.role_path
  description          = each.value.description
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = each.value.max_session_duration
  permissions_boundary = each.value.permissions_boundary
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = var.create_oidc_provider || var.oidc_provider_arn != null
      error_message = "Set oidc_provider_arn when create_oidc_provider is false."
    }
    postcondition {
      condition     = self.arn == local.role_arns[each.key]
      error_message = "The role's ARN differs from the one written in Legate's `[[target]]` snippet: check account_id and partition."
    }
  }
}

resource "aws_iam_role_policy_attachment" "managed" {
  for_each = local.managed_policies

  role       = aws_iam_role.target[each.value.target].name
  policy_arn = each.value.arn
}

resource "aws_iam_role_policy" "inline" {
  for_each = local.inline_policies

  name   = each.value.name
  role   = aws_iam_role.target[each.value.target].id
  policy = each.value.policy
}
