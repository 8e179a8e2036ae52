#!/usr/bin/python3
"""Reads a /metrics page with Prometheus's own client parser (Debian's
python3-prometheus-client) and checks what the parser lets through but
Prometheus's conventions forbid: a family without HELP or TYPE, a counter
not named *_total, a series twice, a histogram whose buckets fall or whose
+Inf bucket is not its count.  Prints every sample as
name{key="value",...} value, labels sorted, for the test to look up; exits
1 with the reason on the first fault."""
import re
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(why):
    print("prom_check: " + why, file=sys.stderr)
    sys.exit(1)


def series(name, labels):
    if not labels:
        return name
    return name + "{" + ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)) + "}"


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, kind in types.items():
        if name not in helps:
            fail("%s has no HELP" % name)
        if kind == "counter" and not name.endswith("_total"):
            fail("counter %s is not named *_total" % name)
        if not name.startswith("memsrv_"):
            fail("%s is not in memsrv's namespace" % name)
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        fail("the parser refused the page: %s" % e)
    seen = set()
    out = []
    for fam in families:
        if fam.type not in ("counter", "gauge", "histogram"):
            fail("%s has type %s" % (fam.name, fam.type))
        buckets = {}
        for s in fam.samples:
            key = series(s.name, s.labels)
            if key in seen:
                fail("%s appears twice" % key)
            seen.add(key)
            out.append("%s %r" % (key, s.value))
            if s.name.endswith("_bucket"):
                rest = {k: v for k, v in s.labels.items() if k != "le"}
                buckets.setdefault(series(fam.name, rest), []).append((float(s.labels["le"]), s.value))
        counts = {series(fam.name, s.labels): s.value for s in fam.samples if s.name.endswith("_count")}
        for key, bs in buckets.items():
            bs.sort()
            if any(b[1] < a[1] for a, b in zip(bs, bs[1:])):
                fail("%s: the buckets fall" % key)
            if bs[-1][0] != float("inf") or bs[-1][1] != counts.get(key):
                fail("%s: the +Inf bucket is not the count" % key)
    print("\n".join(out))


main()
