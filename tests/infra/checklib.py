"""What the template checks share: run a check's findings over the expanded
template, or with --self-test prove that each mutation is caught (the check
can fail).
  python3 check_<x>.py [--self-test] <template.cfn.json>"""
import copy
import json
import sys


def run(name, findings, mutations, ok, select=lambda doc: doc):
    """`findings(doc)` lists what is wrong; each of `mutations` breaks a copy of
    the document in place; `ok(doc)` says what passed; `select` picks the part
    of the template the check reads."""
    args = sys.argv[1:]
    doc = select(json.load(open([a for a in args if a != "--self-test"][0])))
    if "--self-test" in args:
        for mutate in mutations:
            d = copy.deepcopy(doc)
            mutate(d)
            assert findings(d), f"{mutate.__name__} was not caught"
        print(f"{name} check self-test: all {len(mutations)} mutations caught", file=sys.stderr)
        return
    found = findings(doc)
    for f in found:
        print(f"{name}: {f}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{name}: {ok(doc)}", file=sys.stderr)
