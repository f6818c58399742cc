#!/usr/bin/env python3
"""What Athena reads, in the expanded template: each HEP table, and the call
records, is a Glue table
of type DELTA at the root of its Delta table in the lake (no partition
projection, no columns: Athena takes the schema and the files from the Delta
log, so it counts each row once), queried through a workgroup pinned to
engine v3, which reads Delta natively; and the recent compaction runs often
enough for the Delta tables to trail HEPop by at most 15 minutes (a run's
period plus the two minutes a file waits before it is merged). With
--self-test, proves each check catches a mutation."""
import re
import sys

import checklib

TABLES = {
    "GlueTableSip": "hep_1",
    "GlueTableRtcp": "hep_5",
    "GlueTableLog": "hep_100",
    "GlueTableCalls": "calls",
}
# lake::compact::CompactionConfig::young_after, and the lag the README promises.
YOUNG_AFTER_MIN, LAG_MIN = 2, 15


def default(doc, v):
    if isinstance(v, dict) and "Ref" in v:
        return doc["Parameters"].get(v["Ref"], {}).get("Default")
    return v


def lake_location(doc):
    """The lake the functions write, as a Fn::Sub string."""
    for r in doc["Resources"].values():
        env = r.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if "HEPOP_LAKE" in env:
            return env["HEPOP_LAKE"].get("Fn::Sub")
    return None


def schedule_minutes(expr):
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", str(expr))
    if not m:
        return None
    return int(m[1]) * (60 if m[2].startswith("hour") else 1)


def findings(doc):
    res, out = doc["Resources"], []
    lake = lake_location(doc)
    if lake is None:
        out.append("no function names the lake (HEPOP_LAKE)")
    for name, table in TABLES.items():
        t = res.get(name)
        if t is None or t["Type"] != "AWS::Glue::Table":
            out.append(f"no Glue table {table}")
            continue
        ti = t["Properties"]["TableInput"]
        params = ti.get("Parameters", {})
        if params.get("table_type") != "DELTA":
            out.append(f"{table} is not a Delta table (table_type {params.get('table_type')!r})")
        if any(k.startswith("projection.") for k in params):
            out.append(f"{table} projects partitions: Athena would read every file under it, replaced ones too")
        sd = ti.get("StorageDescriptor", {})
        if sd.get("Columns") or ti.get("PartitionKeys"):
            out.append(f"{table} declares columns or partitions: Athena takes them from the Delta log")
        loc = sd.get("Location", {}).get("Fn::Sub") if isinstance(sd.get("Location"), dict) else sd.get("Location")
        if lake is not None and loc != f"{lake}/{table}/":
            out.append(f"{table} at {loc!r}, not the Delta table at {lake}/{table}/")
    groups = [r for r in res.values() if r["Type"] == "AWS::Athena::WorkGroup"]
    v3 = [
        g for g in groups
        if g["Properties"].get("WorkGroupConfiguration", {}).get("EngineVersion", {}).get("SelectedEngineVersion")
        == "Athena engine version 3"
        and g["Properties"]["WorkGroupConfiguration"].get("EnforceWorkGroupConfiguration") is True
    ]
    if not v3:
        out.append("no workgroup enforcing Athena engine version 3 (Delta tables need it)")
    minutes = schedule_minutes(default(doc, doc["Parameters"].get("CompactSchedule", {}).get("Default")))
    if minutes is None or minutes + YOUNG_AFTER_MIN > LAG_MIN:
        out.append(f"recent compaction every {minutes} min: Delta would trail by more than {LAG_MIN} min")
    return out


def self_test():
    """Mutations each check must catch."""
    def hive_table(d):
        d["Resources"]["GlueTableSip"]["Properties"]["TableInput"]["Parameters"] = {"classification": "parquet"}

    def projection(d):
        d["Resources"]["GlueTableRtcp"]["Properties"]["TableInput"]["Parameters"]["projection.enabled"] = "true"

    def columns(d):
        sd = d["Resources"]["GlueTableLog"]["Properties"]["TableInput"]["StorageDescriptor"]
        sd["Columns"] = [{"Name": "time", "Type": "timestamp"}]

    def wrong_location(d):
        sd = d["Resources"]["GlueTableSip"]["Properties"]["TableInput"]["StorageDescriptor"]
        sd["Location"] = {"Fn::Sub": "s3://${LakeBucket}/lake/hep_1/date=2025-01-01/"}

    def engine_v2(d):
        for r in d["Resources"].values():
            if r["Type"] == "AWS::Athena::WorkGroup":
                r["Properties"]["WorkGroupConfiguration"]["EngineVersion"]["SelectedEngineVersion"] = "Athena engine version 2"

    def hourly_compaction(d):
        d["Parameters"]["CompactSchedule"]["Default"] = "rate(1 hour)"

    return (hive_table, projection, columns, wrong_location, engine_v2, hourly_compaction)


def main():
    checklib.run("athena", findings, self_test(), lambda doc: "Delta tables at the lake's tables, engine v3, lag within bounds")

if __name__ == "__main__":
    main()
