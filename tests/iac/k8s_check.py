"""Checks deploy/kubernetes/ offline (run by tests/it/terraform.rs with tests/.venv).

  k8s_check.py validate ROOT
      every manifest validates against the Kubernetes OpenAPI schema bundled with
      kubernetes-validate (strict: unknown fields are errors), and the validator does
      refuse a misspelt field;
  k8s_check.py hardening ROOT
      the deployment holds each hardening setting of issue 15: two or more replicas,
      non-root, read-only root filesystem, no service-account token, probes on /healthz
      and /readyz, resource requests and limits, a PodDisruptionBudget, a NetworkPolicy,
      the config and policies from ConfigMaps, the signing keys from a Secret, Redis as
      the state backend.
  k8s_check.py configmaps ROOT
      prints the ConfigMaps' data as JSON, by ConfigMap name (for the test that starts
      Legate's state from them).
Exits 1 naming every problem.
"""

import copy
import json
import os
import sys
import tomllib

import kubernetes_validate
import yaml

MANIFESTS = "deploy/kubernetes"


def load(root):
    """Every object of every manifest (not the kustomization), with its file."""
    folder = os.path.join(root, MANIFESTS)
    objects = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".yaml") or name == "kustomization.yaml":
            continue
        with open(os.path.join(folder, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    objects.append((name, doc))
    return objects


def validate(root):
    version = kubernetes_validate.latest_version()
    problems = []
    objects = load(root)
    for name, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            print(f"{name}: {doc['kind']}/{doc['metadata']['name']} is valid Kubernetes {version}")
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{name}: {doc['kind']}/{doc['metadata'].get('name')}: {e}")
    # The validator is not vacuous: a misspelt field of the deployment is refused.
    deployment = next(doc for _, doc in objects if doc["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    try:
        kubernetes_validate.validate(bad, version, strict=True)
        problems.append("kubernetes-validate accepted a misspelt securityContext field")
    except kubernetes_validate.ValidationError:
        pass
    kustomization = os.path.join(root, MANIFESTS, "kustomization.yaml")
    with open(kustomization) as f:
        listed = sorted(yaml.safe_load(f)["resources"])
    files = sorted({name for name, _ in objects})
    if listed != files:
        problems.append(f"kustomization.yaml lists {listed}, the folder has {files}")
    return problems


def hardening(root):
    objects = load(root)
    problems = hardening_of(objects)
    # The check is not vacuous: each weakening of the deployment is caught.
    weakenings = {
        "one replica": lambda d: d["spec"].update(replicas=1),
        "root": lambda d: d["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0),
        "writable root filesystem": lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        "token automount": lambda d: d["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
        "no readiness probe": lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"),
        "no limits": lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"),
    }
    for what, weaken in weakenings.items():
        weakened = copy.deepcopy(objects)
        weaken(next(doc for _, doc in weakened if doc["kind"] == "Deployment"))
        if not hardening_of(weakened):
            problems.append(f"the hardening check accepts a deployment with {what}")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        if not hardening_of([(n, d) for n, d in objects if d["kind"] != kind]):
            problems.append(f"the hardening check accepts a deployment without a {kind}")
    return problems


def hardening_of(objects):
    problems = []

    def expect(what, ok):
        if not ok:
            problems.append(what)

    by_kind = {}
    for _, doc in objects:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for _, doc in objects:
        expect(f"{doc['kind']}/{doc['metadata']['name']} is in namespace legate", doc["kind"] == "Namespace" or doc["metadata"].get("namespace") == "legate")

    (deployment,) = by_kind["Deployment"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    expect("two or more replicas", deployment["spec"].get("replicas", 1) >= 2)
    expect("no service-account token automount (pod)", pod.get("automountServiceAccountToken") is False)
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind.get("ServiceAccount", [])}
    sa = accounts.get(pod.get("serviceAccountName"))
    expect("its own ServiceAccount, without token automount", sa is not None and sa.get("automountServiceAccountToken") is False)
    psc = pod.get("securityContext", {})
    expect("pod runs as non-root", psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0)
    expect("pod seccomp RuntimeDefault", psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    expect("terminationGracePeriodSeconds above shutdown_grace_secs", pod.get("terminationGracePeriodSeconds", 30) > 20)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        expect(f"{name}: runAsNonRoot", sc.get("runAsNonRoot") is True)
        expect(f"{name}: read-only root filesystem", sc.get("readOnlyRootFilesystem") is True)
        expect(f"{name}: no privilege escalation", sc.get("allowPrivilegeEscalation") is False)
        expect(f"{name}: not privileged", sc.get("privileged") is False)
        expect(f"{name}: drops ALL capabilities", sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"))
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            port = ports.get(get.get("port"), get.get("port"))
            # /healthz and /readyz are served on the public listener, [server] listen.
            expect(f"{name}: {probe} GET {path} on the public port 8080", get.get("path") == path and port == 8080)
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                expect(f"{name}: resources.{kind}.{r}", r in res.get(kind, {}))
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        expect(f"{name}: every mount read-only", all(m.get("readOnly") is True for m in mounts.values()))
        args = c.get("args", [])
        config_path = args[args.index("--config") + 1] if "--config" in args else None
        expect(f"{name}: legate serve --config <file>", args[:1] == ["serve"] and config_path is not None)

        def source_of(path):
            for mount_path, m in mounts.items():
                if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                    return volumes.get(m["name"], {})
            return {}

        config_volume = source_of(config_path or "")
        expect(f"{name}: the config from a ConfigMap", "configMap" in config_volume)
        configmaps = {cm["metadata"]["name"]: cm for cm in by_kind.get("ConfigMap", [])}
        cm = configmaps.get(config_volume.get("configMap", {}).get("name"), {})
        text = cm.get("data", {}).get(os.path.basename(config_path or ""))
        expect(f"{name}: the ConfigMap holds {config_path}", text is not None)
        if text is None:
            continue
        config = tomllib.loads(text)
        server = config.get("server", {})
        expect("listen on all addresses, port 8080", server.get("listen") == "0.0.0.0:8080")
        expect("metrics on the operator listener, port 9464", server.get("operator_listen", "").endswith(":9464") and ports.get("operator") == 9464)
        expect("shutdown_grace_secs below terminationGracePeriodSeconds", server.get("shutdown_grace_secs", 20) < pod.get("terminationGracePeriodSeconds", 30))
        policy_dir = config.get("policy", {}).get("dir", "")
        policy_volume = source_of(policy_dir)
        sources = policy_volume.get("projected", {}).get("sources", [policy_volume])
        expect("the policies from ConfigMaps", policy_dir.startswith("/") and len(sources) > 0 and all("configMap" in src for src in sources))
        keys = config.get("issuer", {}).get("keys", [])
        expect("signing keys configured", len(keys) >= 1 and not config.get("issuer", {}).get("ephemeral_key", False))
        for k in keys:
            expect(f"signing key {k.get('path')} from a Secret", "secret" in source_of(k.get("path", "")))
        state = config.get("state", {})
        expect("Redis as the state backend, over TLS", state.get("backend") == "redis" and str(state.get("url", "")).startswith("rediss://"))

    for env in (e for c in pod["containers"] for e in c.get("env", [])):
        expect(f"no secret in env {env['name']}", "secretKeyRef" not in env.get("valueFrom", {}))

    pdbs = by_kind.get("PodDisruptionBudget", [])
    expect("a PodDisruptionBudget selecting the pods, keeping one up", any(p["spec"].get("selector", {}).get("matchLabels") == labels and p["spec"].get("minAvailable", 0) >= 1 for p in pdbs))
    policies = by_kind.get("NetworkPolicy", [])
    expect(
        "a NetworkPolicy selecting the pods, for ingress and egress",
        any(p["spec"].get("podSelector", {}).get("matchLabels") == labels and sorted(p["spec"].get("policyTypes", [])) == ["Egress", "Ingress"] for p in policies),
    )
    for p in policies:
        for rule in p["spec"].get("egress", []):
            for to in rule.get("to", []):
                block = to.get("ipBlock")
                if block and block.get("cidr") == "0.0.0.0/0":
                    expect("egress to anywhere excludes the metadata range", "169.254.0.0/16" in block.get("except", []))
    namespaces = by_kind.get("Namespace", [])
    expect("the namespace enforces the restricted Pod Security Standard", any(n["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted" for n in namespaces))
    return problems


def main(argv):
    if len(argv) == 2 and argv[0] == "configmaps":
        maps = {doc["metadata"]["name"]: doc.get("data", {}) for _, doc in load(argv[1]) if doc["kind"] == "ConfigMap"}
        print(json.dumps(maps))
        return
    if len(argv) != 2 or argv[0] not in ("validate", "hardening"):
        raise SystemExit(__doc__)
    problems = validate(argv[1]) if argv[0] == "validate" else hardening(argv[1])
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    if argv[0] == "hardening":
        print("deploy/kubernetes is hardened")


if __name__ == "__main__":
    main(sys.argv[1:])
