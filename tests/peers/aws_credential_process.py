#!/usr/bin/env python3
"""boto3 through AWS `credential_process`, for Legate's integration tests.

    aws_credential_process.py --endpoint URL --config-dir DIR [--region R] -- CMD [ARG...]

Writes DIR/config with one profile whose `credential_process` is CMD (each
argument quoted with shlex, as botocore splits the line), points
AWS_CONFIG_FILE at it (and AWS_SHARED_CREDENTIALS_FILE at an empty file, so
nothing else supplies credentials), drops every AWS_* credential variable,
and calls `sts.get_caller_identity()` at URL through that profile. botocore
runs CMD itself, without a shell, and reads its JSON (Version 1).

On success: `{"Account", "Arn", "UserId"}` on stdout, exit 0. When STS
answers with an error, or the credential process fails (botocore raises
CredentialRetrievalError with the process's stderr): the message on stderr,
exit 1. A broken harness exits 2 (usage), 3 (boto3 not importable) or 4 (no
answer from the endpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        CredentialRetrievalError,
        EndpointConnectionError,
    )
except ImportError as _e:  # a broken harness, not a verdict
    print(f"aws_credential_process: cannot import boto3: {_e}", file=sys.stderr)
    sys.exit(3)

TIMEOUT_SECONDS = 20
PROFILE = "legate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("aws_credential_process: no credential process command", file=sys.stderr)
        sys.exit(2)

    config = os.path.join(args.config_dir, "config")
    credentials = os.path.join(args.config_dir, "credentials")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"[profile {PROFILE}]\n")
        f.write(f"region = {args.region}\n")
        f.write(f"credential_process = {shlex.join(command)}\n")
    open(credentials, "w", encoding="utf-8").close()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = config
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials

    session = boto3.Session(profile_name=PROFILE)
    sts = session.client(
        "sts",
        endpoint_url=args.endpoint,
        config=Config(
            connect_timeout=TIMEOUT_SECONDS,
            read_timeout=TIMEOUT_SECONDS,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )
    try:
        answer = sts.get_caller_identity()
    except ClientError as e:
        error = e.response.get("Error", {})
        print(f"{error.get('Code', '?')}: {error.get('Message', '')}", file=sys.stderr)
        sys.exit(1)
    except CredentialRetrievalError as e:
        print(f"credential_process failed: {e}", file=sys.stderr)
        sys.exit(1)
    except EndpointConnectionError as e:
        print(f"aws_credential_process: no answer from {args.endpoint}: {e}", file=sys.stderr)
        sys.exit(4)
    except BotoCoreError as e:
        print(f"aws_credential_process: {e}", file=sys.stderr)
        sys.exit(4)
    print(json.dumps({k: answer[k] for k in ("Account", "Arn", "UserId")}))


if __name__ == "__main__":
    main()
