#!/usr/bin/env python3
"""boto3 against an AWS STS endpoint, for Legate's integration tests.

    aws_caller_identity.py --endpoint URL [--region R] < credentials.json
    aws_caller_identity.py --endpoint URL --assume-role-with-web-identity ARN
                           [--role-session-name NAME] [--duration-seconds N]
                           [--region R] < token

Default mode: reads AWS credentials as one JSON object on stdin -- the AWS
`credential_process` shape (`AccessKeyId`, `SecretAccessKey`, `SessionToken`,
as Legate returns them under `aws_credentials`) or the STS `Credentials`
shape (same member names) -- calls `sts.get_caller_identity()` at URL with
them (a SigV4-signed request), and prints `{"Account", "Arn", "UserId"}`.

`--assume-role-with-web-identity ARN` mode: reads a web identity token on
stdin, calls `sts.assume_role_with_web_identity()` at URL (unsigned, as the
operation is), and prints the credentials in the `credential_process` shape
(`Version` 1, `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`)
plus `AssumedRoleArn` -- ready to feed back into the default mode.

On success: one JSON object on stdout, exit 0. When STS answers with an error:
`<Code>: <Message>` on stderr, exit 1. A broken harness exits otherwise:
usage error or unreadable input 2, boto3 not importable 3, no answer from
the endpoint (connection refused, timeout) 4.

URL must be http:// on loopback (moto, the strict fakes) or https://.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import urllib.parse
from datetime import timezone
from typing import Any

try:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
except ImportError as _e:  # a broken harness, not a verdict
    print(f"aws_caller_identity: cannot import boto3: {_e}", file=sys.stderr)
    sys.exit(3)

TIMEOUT_SECONDS = 20
MAX_INPUT_BYTES = 1 << 20


def usage(message: str) -> None:
    print(f"aws_caller_identity: {message}", file=sys.stderr)
    sys.exit(2)


def check_endpoint(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname:
        host = parsed.hostname
        if host == "localhost":
            return
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
    usage(f"--endpoint must be https:// or http:// on loopback, got {url!r}")


def read_stdin() -> str:
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        usage("stdin is larger than 1 MiB")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        usage("stdin is not UTF-8")
    return ""  # unreachable: usage() exits


def client(endpoint: str, region: str, unsigned: bool = False, **credentials: str) -> Any:
    extra: dict[str, Any] = {"signature_version": UNSIGNED} if unsigned else {}
    config = Config(
        connect_timeout=TIMEOUT_SECONDS,
        read_timeout=TIMEOUT_SECONDS,
        retries={"max_attempts": 1, "mode": "standard"},
        **extra,
    )
    return boto3.client("sts", endpoint_url=endpoint, region_name=region, config=config, **credentials)


def caller_identity(args: argparse.Namespace) -> dict[str, Any]:
    try:
        creds = json.loads(read_stdin())
    except json.JSONDecodeError as e:
        usage(f"stdin is not JSON: {e}")
    if not isinstance(creds, dict):
        usage("stdin is not a JSON object")
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken")
    missing = [k for k in names if not isinstance(creds.get(k), str)]
    if missing:
        usage(f"the credentials lack {', '.join(missing)}")
    sts = client(
        args.endpoint,
        args.region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    answer = sts.get_caller_identity()
    return {k: answer[k] for k in ("Account", "Arn", "UserId")}


def assume_role(args: argparse.Namespace) -> dict[str, Any]:
    token = read_stdin()
    if not token:
        usage("no web identity token on stdin")
    sts = client(args.endpoint, args.region, unsigned=True)
    request: dict[str, Any] = {
        "RoleArn": args.assume_role_with_web_identity,
        "RoleSessionName": args.role_session_name,
        "WebIdentityToken": token,
    }
    if args.duration_seconds is not None:
        request["DurationSeconds"] = args.duration_seconds
    answer = sts.assume_role_with_web_identity(**request)
    creds = answer["Credentials"]
    expiration = creds["Expiration"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Version": 1,
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "SessionToken": creds["SessionToken"],
        "Expiration": expiration,
        "AssumedRoleArn": answer["AssumedRoleUser"]["Arn"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--assume-role-with-web-identity", metavar="ROLE_ARN")
    parser.add_argument("--role-session-name", default="legate-test")
    parser.add_argument("--duration-seconds", type=int)
    args = parser.parse_args()
    check_endpoint(args.endpoint)
    try:
        if args.assume_role_with_web_identity:
            result = assume_role(args)
        else:
            result = caller_identity(args)
    except ClientError as e:
        error = e.response.get("Error", {})
        print(f"{error.get('Code', '?')}: {error.get('Message', '')}", file=sys.stderr)
        sys.exit(1)
    except EndpointConnectionError as e:
        print(f"aws_caller_identity: no answer from {args.endpoint}: {e}", file=sys.stderr)
        sys.exit(4)
    except BotoCoreError as e:
        print(f"aws_caller_identity: {e}", file=sys.stderr)
        sys.exit(4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
