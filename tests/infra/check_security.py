#!/usr/bin/env python3
"""Least privilege on the expanded template (plain CloudFormation from samtranslator).

Checks: nothing public (no Allow to a public principal, every Lambda permission
scoped to a service and a source ARN, every API route behind AWS_IAM, no
function URL), the bucket TLS-only and closed to public access, encryption at
rest on the stream and queue, and every role's actions exactly as listed below:
a new permission fails this check until it is added here, on purpose.

    check_security.py template.cfn.json            check, exit 1 on any finding
    check_security.py --self-test template.cfn.json  prove each check can fail
"""

import checklib

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
KINESIS = "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole"

# role -> (inline actions, AWS-managed policies). SAM attaches the Kinesis
# execution policy for the stream event; CloudWatch Logs come with the basic one.
EXPECTED_ROLES = {
    "IngestFunctionRole": ({"s3:PutObject", "sqs:SendMessage"}, {BASIC, KINESIS}),
    "QueryFunctionRole": ({"s3:GetObject", "s3:ListBucket"}, {BASIC}),
    "CompactorFunctionRole": (
        {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"},
        {BASIC},
    ),
}
EXPECTED_MANAGED = {
    "RelayPutRecordsPolicy": {"kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kms:GenerateDataKey"}
}


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(doc):
    return as_list((doc or {}).get("Statement", []))


def is_public(principal):
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(p == "*" for v in principal.values() for p in as_list(v))
    return False


def findings(resources):
    out = []
    for name, r in resources.items():
        t, p = r["Type"], r.get("Properties", {})
        # Every policy document anywhere: no public Allow, no wildcard actions, "*" resources only with a condition.
        docs = []
        if t == "AWS::IAM::Role":
            docs += [pol["PolicyDocument"] for pol in p.get("Policies", [])]
        if t in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"):
            docs.append(p.get("PolicyDocument"))
        for doc in docs:
            for s in statements(doc):
                if s.get("Effect") != "Allow":
                    continue
                if is_public(s.get("Principal")):
                    out.append(f"{name}: Allow to a public principal")
                for a in as_list(s.get("Action", [])):
                    if a == "*" or (isinstance(a, str) and a.endswith(":*")):
                        out.append(f"{name}: wildcard action {a}")
                if "*" in as_list(s.get("Resource", [])) and "Condition" not in s:
                    out.append(f"{name}: Resource '*' without a condition")
        if t == "AWS::Lambda::Permission":
            principal = p.get("Principal", "")
            if not (isinstance(principal, str) and principal.endswith(".amazonaws.com")):
                out.append(f"{name}: Lambda permission for {principal!r}, not an AWS service")
            if "SourceArn" not in p:
                out.append(f"{name}: Lambda permission without SourceArn")
        if t == "AWS::Lambda::Url":
            out.append(f"{name}: function URL (public HTTP endpoint)")
        if t == "AWS::ApiGateway::RestApi":
            out.append(f"{name}: REST API outside the IAM-authorised HTTP API")
        if t == "AWS::ApiGatewayV2::Route" and p.get("AuthorizationType") != "AWS_IAM":
            out.append(f"{name}: route without AWS_IAM")
        if t == "AWS::ApiGatewayV2::Api":
            for path, methods in p.get("Body", {}).get("paths", {}).items():
                for method, op in methods.items():
                    if {"AWS_IAM": []} not in op.get("security", []):
                        out.append(f"{name}: {method.upper()} {path} without AWS_IAM")
        if t == "AWS::S3::Bucket":
            block = p.get("PublicAccessBlockConfiguration", {})
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
                if block.get(k) is not True:
                    out.append(f"{name}: {k} is not true")
            if "BucketEncryption" not in p:
                out.append(f"{name}: no default encryption")
            tls_only = [
                s for rn, rr in resources.items() if rr["Type"] == "AWS::S3::BucketPolicy"
                and rr["Properties"].get("Bucket") == {"Ref": name}
                for s in statements(rr["Properties"].get("PolicyDocument"))
                if s.get("Effect") == "Deny"
                and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
                and len(as_list(s.get("Resource", []))) == 2
            ]
            if not tls_only:
                out.append(f"{name}: no TLS-only (aws:SecureTransport) deny on the bucket and its objects")
        if t == "AWS::Kinesis::Stream" and p.get("StreamEncryption", {}).get("EncryptionType") != "KMS":
            out.append(f"{name}: stream not encrypted with KMS")
        if t == "AWS::SQS::Queue" and not (p.get("SqsManagedSseEnabled") or p.get("KmsMasterKeyId")):
            out.append(f"{name}: queue not encrypted")
    # Every function's actions, exactly.
    for role, (actions, managed) in EXPECTED_ROLES.items():
        r = resources.get(role)
        if r is None:
            out.append(f"{role}: missing")
            continue
        got = {
            a
            for pol in r["Properties"].get("Policies", [])
            for s in statements(pol["PolicyDocument"])
            if s.get("Effect") == "Allow"
            for a in as_list(s["Action"])
        }
        if got != actions:
            out.append(f"{role}: actions {sorted(got)} != listed {sorted(actions)}")
        got_managed = set(r["Properties"].get("ManagedPolicyArns", []))
        if got_managed != managed:
            out.append(f"{role}: managed policies {sorted(got_managed)} != listed {sorted(managed)}")
    roles = {n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    for extra in sorted(roles - EXPECTED_ROLES.keys()):
        out.append(f"{extra}: a role this check does not list")
    for pol, actions in EXPECTED_MANAGED.items():
        got = {a for s in statements(resources[pol]["Properties"]["PolicyDocument"]) for a in as_list(s["Action"])}
        if got != actions:
            out.append(f"{pol}: actions {sorted(got)} != listed {sorted(actions)}")
    return out


def self_test():
    """Mutations each check must catch."""
    def public_bucket(r):
        r["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})

    def open_route(r):
        for methods in r["QueryApi"]["Properties"]["Body"]["paths"].values():
            for op in methods.values():
                op["security"] = []
                return

    def wildcard(r):
        r["QueryFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] = "s3:*"

    def extra_action(r):
        r["QueryFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/lake/*"})

    def no_tls(r):
        r["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"] = []

    def public_invoke(r):
        r["QueryFunctionQueryGetPermission"]["Properties"]["Principal"] = "*"

    def function_url(r):
        r["Url"] = {"Type": "AWS::Lambda::Url", "Properties": {"AuthType": "NONE"}}

    def unblocked(r):
        r["LakeBucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] = False

    return (public_bucket, open_route, wildcard, extra_action, no_tls, public_invoke, function_url, unblocked)


def main():
    checklib.run(
        "least privilege",
        findings,
        self_test(),
        lambda r: f"{len(r)} resources checked, nothing public, every action listed",
        select=lambda doc: doc["Resources"],
    )

if __name__ == "__main__":
    main()
