#!/usr/bin/env python
"""Create the media bucket if it does not exist; a one-shot step before web and workers start.

Reads the same variables as the application (AWS_S3_ENDPOINT_URL, AWS_STORAGE_BUCKET_NAME,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME), so a bucket it can create is one
the application can write: wrong credentials fail here, once, instead of in the first job.
Safe to run again. Not a module of the application: nothing imports it.
"""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError


def main() -> int:
    bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        print("AWS_STORAGE_BUCKET_NAME is not set", file=sys.stderr)
        return 2
    region = os.environ.get("AWS_S3_REGION_NAME") or None
    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_S3_ENDPOINT_URL") or None,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
    )
    # The store's health check passes before its S3 gateway has loaded its identities on some
    # starts; a few retries cover that without hiding a real outage.
    for attempt in range(10):
        try:
            client.head_bucket(Bucket=bucket)
            print(f"bucket {bucket} exists")
            return 0
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"404", "NoSuchBucket", "NotFound"}:
                break
            if code in {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                print(
                    f"bucket {bucket}: access denied ({code}); check the S3 credentials",
                    file=sys.stderr,
                )
                return 1
            error: Exception = exc
        except EndpointConnectionError as exc:
            error = exc
        print(f"attempt {attempt + 1}: {error}", file=sys.stderr)
        time.sleep(2)
    else:
        print(f"bucket {bucket}: S3 endpoint not answering", file=sys.stderr)
        return 1
    arguments: dict = {"Bucket": bucket}
    if region and region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    client.create_bucket(**arguments)
    print(f"bucket {bucket} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
