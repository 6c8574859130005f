#!/usr/bin/env python3
"""make demo's summary: every goal the demo's runs measured, with its value
and verdict, from the JSON files the benches wrote into OUT.

    demo-report.py OUT

It leads with what this platform measures truthfully: the host-native
benches (the card's engine, IPC: the machine's own cores) and what is
counted rather than timed (copies, CPU time). The guest's timings come
after, as ratios within one run, with the reason (TCG). A bench that did
not run, or ran as a smoke run, says so instead of giving a verdict.
"""
import json
import os
import sys

TCG_WHY = ("QEMU's TCG translates every guest instruction (no KVM on this machine), so the\n"
           "guest's times are the emulator's; only ratios within one run are read, and a\n"
           "software NIC (Soft-RoCE) and the far end share the same two emulated CPUs.")


def load(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def verdict(goal, doc):
    if goal.get("verdict"):
        # The bench's own words (met, NOT met, or why there is none).
        return goal["verdict"]
    met = goal.get("met")
    if met is True:
        return "met"
    if met is False:
        return "NOT met"
    if doc.get("quick"):
        return "not judged (a quick run)"
    if goal.get("every_size_measured") is False:
        return "not judged (not every size measured)"
    return "not measured"


def value(goal):
    if goal.get("value"):
        return goal["value"]
    ours, ref = goal.get("ours"), goal.get("reference")
    if ours is not None and ref:
        return f"{ours:.4g} vs {ref:.4g} ({ours / ref:.2f}x)"
    if goal.get("worst_ratio") is not None:
        return f"worst ratio {goal['worst_ratio']:.2f}"
    return "not measured in this run"


def goals(label, doc, missing):
    if not doc:
        print(f"  {label:<9} no result: {missing}")
        return
    for g in doc.get("goals", []):
        print(f"  {label:<9} {g['goal']}")
        v, said = value(g), verdict(g, doc)
        print(f"  {'':<9}   {v if v.startswith('not ') else v + ': ' + said}")


def pct(v):
    return "-" if v is None else f"{v * 100:.0f} %"


REACH = {
    "local": "to a local peer (Unix socket, shm and card channels)",
    "network": "to a network peer (TCP, RDMA)",
}


def pipeline_tables(p):
    """Copies and serving CPU per way (counted: true under TCG too), one
    table per reach (local peer, network peer)."""
    groups = {}
    for w in p["ways"]:
        groups.setdefault(w.get("reach", "network"), []).append(w)
    for reach, ways in groups.items():
        print(f"  pipeline, {REACH.get(reach, reach)}:")
        print(f"    {'way':<24} {'CPU copies (app + kernel)':<27} {'serving CPU':>11}")
        print(f"    {'':<24} {'serving':<12} {'far end':<14} {'/ read+write':>11}")
        for w in ways:
            mine = f"{w['application_copies']} + {w['kernel_copies']}"
            far = f"{w.get('far_application_copies', '-')} + {w.get('far_kernel_copies', '-')}"
            print(f"    {w['name']:<24} {mine:<12} {far:<14} {pct(w.get('cpu_vs_read_write')):>11}")
    for w in p["ways"]:
        if w.get("kernel_copies") and w.get("way", "").startswith("card"):
            # What a counter showed beside the construction (MSG_ZEROCOPY
            # sends the kernel copied after all).
            seen = [c for c in w.get("checked", "").split("; ") if "copied" in c]
            print(f"    {w['name']}: {'; '.join([w['how']] + seen)}")
    for s in p.get("skipped", []):
        print(f"    skipped {s['way']}: {s['reason']}")


def pipeline_goals(p):
    """The pipeline's goals, from its JSON: each with its value and verdict."""
    for g in p.get("goals", []):
        print(f"  {'pipeline':<9} {g['goal']}")
        if g.get("transfer_ratio") is None:
            print(f"  {'':<9}   {g['verdict']}")
            continue
        said = {"met": "met", "not met": "NOT met"}.get(g["verdict"], g["verdict"])
        print(f"  {'':<9}   {g['name']}: transfer {pct(g['transfer_ratio'])}, "
              f"serving CPU {pct(g.get('cpu_ratio'))} of read+write's: {said}")


def main():
    out = sys.argv[1]
    p = load(out, "pipeline.json")
    if p:
        print(f"The reference claim ({p['reference_source']}):")
        print(f"  {p['reference_claim']}.")
    print()
    ipc = load(out, "ipc.json")
    # The IPC bench ran in this guest (the reduced demo) when its JSON
    # names this kernel: then its times are the emulator's too.
    ipc_here = bool(ipc) and ipc.get("machine", {}).get("kernel") == os.uname().release
    print("Measured natively on the host's own cores (these figures are the machine's):")
    goals("engine", load(out, "zcard-engine.json"),
          "the card's engine is measured on the host (make demo, make bench)")
    if ipc_here:
        print(f"  {'IPC':<9} ran in the guest here: under the TCG timings below")
    else:
        goals("IPC", ipc, "see the shm bench above")
        moved = (ipc or {}).get("placement_moved")
        if moved:
            lo, hi = moved["rounds_floor_ns"]
            print(f"  {'IPC':<9} the host moved the two CPUs within this run: the table's floor "
                  f"{moved['table_floor_ns']} ns, the rounds' {lo}–{hi} ns;")
            print(f"  {'':<9}   goals read off the table may compare two placements, "
                  "those judged on rounds do not")
    print()
    print("Counted in the guest, not timed (true under emulation too):")
    if p:
        pipeline_tables(p)
    else:
        print("  pipeline: no result (see above)")
    print()
    print("Timed in the guest under TCG, as ratios within one run:")
    print("  " + TCG_WHY.replace("\n", "\n  "))
    if p:
        pipeline_goals(p)
    else:
        print("  pipeline  no result (see above)")
    if ipc_here:
        goals("IPC", ipc, "see the shm bench above")
    goals("RDMA", load(out, "rdma.json"), "see the RDMA bench above")


if __name__ == "__main__":
    main()
