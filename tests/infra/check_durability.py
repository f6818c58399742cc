#!/usr/bin/env python3
"""Durability settings of the expanded template: a failing ingest batch is
retried until its records would leave the stream, the stream keeps them a
week by default, S3 retries end inside the function's timeout, and every way
of falling behind or giving up raises an alarm. With --self-test, proves each
check catches a mutation."""

import checklib

# lake::store::S3_RETRY_TIMEOUT plus one 30 s request: must end inside the ingest timeout.
S3_RETRY_SECS = 60 + 30


def default(doc, v):
    """A value, or the default of the parameter it refers to."""
    if isinstance(v, dict) and "Ref" in v:
        return doc["Parameters"].get(v["Ref"], {}).get("Default")
    return v


def alarm_on(res, namespace, metric, target):
    for r in res.values():
        p = r.get("Properties", {})
        if r["Type"] != "AWS::CloudWatch::Alarm" or p.get("Namespace") != namespace or p.get("MetricName") != metric:
            continue
        for d in p.get("Dimensions", []):
            v = d.get("Value")
            if v == {"Ref": target} or v == {"Fn::GetAtt": [target, "QueueName"]}:
                return True
    return False


def findings(doc):
    res, out = doc["Resources"], []
    esm = res["IngestFunctionStream"]["Properties"]
    if default(doc, esm.get("MaximumRetryAttempts")) != -1:
        out.append("ingest retries are bounded by default: they must last as long as the stream keeps records")
    if default(doc, esm.get("MaximumRecordAgeInSeconds")) != -1:
        out.append("ingest gives up on records before the stream drops them")
    if not esm.get("DestinationConfig", {}).get("OnFailure"):
        out.append("no on-failure destination: what ingest gives up on is not named anywhere")
    if esm.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        out.append("no partial batch responses: one bad record retries the whole batch")
    hours = default(doc, res["HepStream"]["Properties"].get("RetentionPeriodHours"))
    if not isinstance(hours, int) or hours < 168:
        out.append(f"stream retention {hours} h: the default must be at least 7 days")
    timeout = default(doc, res["IngestFunction"]["Properties"].get("Timeout"))
    if not isinstance(timeout, int) or timeout <= S3_RETRY_SECS:
        out.append(f"ingest timeout {timeout} s does not outlast S3 retries ({S3_RETRY_SECS} s)")
    for ns, metric, target in [
        ("AWS/Lambda", "IteratorAge", "IngestFunction"),
        ("AWS/Lambda", "Errors", "IngestFunction"),
        ("AWS/Lambda", "Errors", "CompactorFunction"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "IngestFailures"),
    ]:
        if not alarm_on(res, ns, metric, target):
            out.append(f"no alarm on {metric} of {target}")
    return out


def self_test():
    """Mutations each check must catch."""
    def bounded_retries(d):
        d["Resources"]["IngestFunctionStream"]["Properties"]["MaximumRetryAttempts"] = 5

    def record_age(d):
        d["Resources"]["IngestFunctionStream"]["Properties"]["MaximumRecordAgeInSeconds"] = 3600

    def no_destination(d):
        del d["Resources"]["IngestFunctionStream"]["Properties"]["DestinationConfig"]

    def one_day(d):
        d["Parameters"]["StreamRetentionHours"]["Default"] = 24

    def short_timeout(d):
        d["Resources"]["IngestFunction"]["Properties"]["Timeout"] = 60

    def no_alarms(d):
        for n in [n for n, r in d["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]:
            del d["Resources"][n]

    return (bounded_retries, record_age, no_destination, one_day, short_timeout, no_alarms)


def main():
    checklib.run("durability", findings, self_test(), lambda doc: "retries last the stream's retention, alarms on age, errors and failures")

if __name__ == "__main__":
    main()
