#!/usr/bin/env python3
"""The stock cloud SDKs' default credential paths, for Legate's broker tests.

    sdk_credentials.py aws --endpoint STS_URL [--region R]
    sdk_credentials.py gcp
    sdk_credentials.py azure --scope SCOPE

Each mode uses only what the SDK reads from its environment, exactly as an
unmodified application would, and prints one JSON object:

- aws: boto3's default credential chain (the caller sets
  AWS_EC2_METADATA_SERVICE_ENDPOINT for IMDSv2, or
  AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN for
  the ECS endpoint), then sts.get_caller_identity() at STS_URL; prints
  {"method", "AccessKeyId", "Account", "Arn"} (method: botocore's name of the
  provider that found the credentials, "iam-role" or "container-role").
- gcp: google.auth.compute_engine.Credentials().refresh() (the caller sets
  GCE_METADATA_HOST); prints {"token", "service_account_email"}.
- azure: azure.identity.ManagedIdentityCredential().get_token(SCOPE) (the
  caller sets IDENTITY_ENDPOINT + IDENTITY_HEADER); prints {"token",
  "expires_on"}.

On success exit 0. When the SDK fails (no credentials, a refusal): its error
on stderr, exit 1. A broken harness exits otherwise: usage error 2, an SDK not
importable 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def aws(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        print(f"sdk_credentials: cannot import boto3: {e}", file=sys.stderr)
        sys.exit(3)
    session = boto3.Session(region_name=args.region)
    creds = session.get_credentials()
    if creds is None:
        raise RuntimeError("boto3 found no credentials")
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    sts = session.client("sts", endpoint_url=args.endpoint, config=config)
    answer = sts.get_caller_identity()
    frozen = creds.get_frozen_credentials()
    return {
        "method": creds.method,
        "AccessKeyId": frozen.access_key,
        "Account": answer["Account"],
        "Arn": answer["Arn"],
    }


def gcp(_args: argparse.Namespace) -> dict[str, Any]:
    try:
        import google.auth.transport.requests
        from google.auth import compute_engine
    except ImportError as e:
        print(f"sdk_credentials: cannot import google-auth: {e}", file=sys.stderr)
        sys.exit(3)
    credentials = compute_engine.Credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    return {
        "token": credentials.token,
        "service_account_email": credentials.service_account_email,
    }


def azure(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from azure.identity import ManagedIdentityCredential
    except ImportError as e:
        print(f"sdk_credentials: cannot import azure-identity: {e}", file=sys.stderr)
        sys.exit(3)
    token = ManagedIdentityCredential().get_token(args.scope)
    return {"token": token.token, "expires_on": token.expires_on}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="sdk", required=True)
    p_aws = sub.add_parser("aws")
    p_aws.add_argument("--endpoint", required=True)
    p_aws.add_argument("--region", default="us-east-1")
    sub.add_parser("gcp")
    p_azure = sub.add_parser("azure")
    p_azure.add_argument("--scope", required=True)
    args = parser.parse_args()
    run = {"aws": aws, "gcp": gcp, "azure": azure}[args.sdk]
    try:
        result = run(args)
    except Exception as e:  # the SDK's verdict, whatever its exception type
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
