#!/usr/bin/env python3
"""Test result plumbing for ci/qemu-test.sh.

    report.py libtest SUITE LOG        cargo test output -> result lines
    report.py guest-bins               cargo --message-format=json (stdin) ->
                                       "suite<TAB>executable" of guest test binaries
    report.py junit RESULTS XML        result lines -> JUnit XML and the summary;
                                       exits 1 when a case failed

A result line is tab separated: suite, name, pass|fail|skip, seconds, log,
and for a skip, why (optional).

A skip means a test that ran nowhere. The host lists the guest's tests as
ignored (they need the VM); where the same test of the same binary has a
result in a guest suite (guest-BINARY, guest-BINARY-TAG), the host's line
is not a skip and is left out of the counts and of the JUnit file. Likewise
a guest case that skipped itself in one boot (guest-SUITE) and ran in a
tagged one (guest-SUITE-TAG). The summary lists every real skip with its
reason.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

CASE = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)(?:, (.*))?$")
RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+) \((.+)\)$")
# Packages whose integration tests also run in the guest (--include-ignored).
GUEST_PACKAGES = {"zcopy-vm-tests", "zcopy-cli"}


def libtest(suite, log):
    binary = "?"
    for line in open(log, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = RUNNING.match(line)
        if m:
            binary = m.group(2).rsplit("/", 1)[-1].rsplit("-", 1)[0]
            continue
        m = CASE.match(line)
        if m:
            status = {"ok": "pass", "FAILED": "fail", "ignored": "skip"}[m.group(2)]
            line = f"{suite}-{binary}\t{m.group(1)}\t{status}\t0\t{log}"
            if status == "skip":
                line += "\tignored: " + (m.group(3) or "no reason given")
            print(line)


def package_name(package_id):
    """The package's name in a cargo package ID: "path+file:///.../tests#zcopy-vm-tests@0.1.0",
    or, when the name is the directory's, "path+file:///.../zcopy-cli#0.1.0"."""
    url, _, fragment = package_id.rpartition("#")
    if "@" in fragment:
        return fragment.split("@", 1)[0]
    return url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]


def guest_bins():
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        target = msg["target"]
        if "test" in target["kind"] and package_name(msg["package_id"]) in GUEST_PACKAGES:
            print(f"{target['name']}\t{msg['executable']}")


def read_results(results):
    """The result lines of RESULTS as (suite, name, status, secs, log, why)."""
    cases = []
    for line in open(results, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 5:
            parts.append("")
        if len(parts) == 6:
            cases.append(tuple(parts))
    return cases


def ran_in_guest(cases):
    """(binary, name) of every test with a result in a guest suite."""
    ran = set()
    for suite, name, status, *_ in cases:
        if suite.startswith("guest-") and status != "skip":
            ran.add((suite[len("guest-"):], name))
            ran.add((suite[len("guest-"):].rsplit("-", 1)[0], name))
    return ran


def split_host_skips(cases):
    """The cases that count, the number of host skips that ran in the guest,
    and the number of guest skips that ran in another boot (a shell case that
    skips itself in the main boot and runs in a tagged one: guest-sh-faults)."""
    ran = ran_in_guest(cases)
    kept, in_guest, elsewhere = [], 0, 0
    for case in cases:
        suite, name, status = case[:3]
        if status == "skip" and suite.startswith("host-") and (suite[len("host-"):], name) in ran:
            in_guest += 1
        elif status == "skip" and suite.startswith("guest-") and (suite[len("guest-"):], name) in ran:
            elsewhere += 1
        else:
            kept.append(case)
    return kept, in_guest, elsewhere


def junit(results, xml_path):
    cases, in_guest, elsewhere = split_host_skips(read_results(results))
    suites = {}
    for suite, name, status, secs, log, why in cases:
        suites.setdefault(suite, []).append((name, status, secs, log, why))
    root = ET.Element("testsuites", name="zcopy qemu-test")
    for suite, items in suites.items():
        s = ET.SubElement(root, "testsuite", name=suite, tests=str(len(items)),
                          failures=str(sum(1 for i in items if i[1] == "fail")),
                          skipped=str(sum(1 for i in items if i[1] == "skip")))
        for name, status, secs, log, why in items:
            c = ET.SubElement(s, "testcase", classname=suite, name=name, time=secs)
            if status == "fail":
                ET.SubElement(c, "failure", message=f"failed; log: {log}")
            elif status == "skip":
                ET.SubElement(c, "skipped", message=why or "no reason given")
    ET.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=True)
    counts = {k: sum(1 for c in cases if c[2] == k) for k in ("pass", "fail", "skip")}
    print()
    for suite, items in suites.items():
        n = {k: sum(1 for i in items if i[1] == k) for k in ("pass", "fail", "skip")}
        print(f"  {suite:<28} {n['pass']:>4} passed {n['fail']:>3} failed {n['skip']:>3} skipped")
    for suite, name, status, _, log, _ in cases:
        if status == "fail":
            print(f"  FAILED {suite}/{name}  (log: {log})")
    skips = {}
    for suite, name, status, _, _, why in cases:
        if status == "skip":
            skips.setdefault(why or "no reason given", []).append(f"{suite}/{name}")
    if skips:
        print("Skipped (ran nowhere), by reason:")
        for why, names in skips.items():
            shown = ", ".join(names[:3]) + (f", and {len(names) - 3} more" if len(names) > 3 else "")
            print(f"  {len(names)} x {why}: {shown}")
    print(f"JUnit: {xml_path}")
    notes = []
    if in_guest:
        notes.append(f"{in_guest} listed as ignored on the host ran in the guest")
    if elsewhere:
        notes.append(f"{elsewhere} skipped in one boot ran in another")
    tail = f" ({', '.join(notes)})" if notes else ""
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped{tail}")
    return 1 if counts["fail"] or not cases else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "libtest":
        libtest(argv[2], argv[3])
    elif len(argv) == 2 and argv[1] == "guest-bins":
        guest_bins()
    elif len(argv) == 4 and argv[1] == "junit":
        return junit(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
