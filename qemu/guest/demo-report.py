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


def pipeline_tables(p):
    """Copies and serving CPU per way (counted: true under TCG too), one
    table per group of ways (local peer, network peer)."""
    groups = {}
    for w in p["ways"]:
        groups.setdefault(w.get("group", "to a network peer (TCP, RDMA)"), []).append(w)
    for name, ways in groups.items():
        print(f"  pipeline, {name}: CPU copies on the serving side, serving CPU time")
        print(f"    {'way':<24} {'copies (app+kernel)':<20} {'CPU / read+write':>16}")
        for w in ways:
            copies = f"{w['application_copies']} + {w['kernel_copies']}"
            print(f"    {w['name']:<24} {copies:<20} {pct(w.get('cpu_vs_read_write')):>16}")
    for w in p["ways"]:
        if w.get("kernel_copies") and w.get("way", "").startswith("card"):
            print(f"    {w['name']}: {w['how']}")
    for s in p.get("skipped", []):
        print(f"    skipped {s['way']}: {s['reason']}")


def pipeline_goals(p):
    """The pipeline's goals, from its JSON: each with a value and verdict."""
    listed = p.get("goals")
    if listed:
        for g in listed:
            print(f"  {'pipeline':<9} {g['goal']}")
            print(f"  {'':<9}   {value(g)}: {verdict(g, p)}")
        return
    b, c = p.get("best_zero_copy_ratio"), p.get("best_zero_copy_cpu_ratio")
    goal = f"the best zero-copy way ≤ {p['goal_ratio'] * 100:.0f} % of read+write's time"
    print(f"  {'pipeline':<9} {goal}")
    if b is None:
        print(f"  {'':<9}   not measured (no zero-copy way ran beside read+write)")
    else:
        met = "met" if p.get("goal_met") else "NOT met"
        print(f"  {'':<9}   {pct(b)} (its serving CPU: {pct(c)} of read+write's): {met}")


def main():
    out = sys.argv[1]
    p = load(out, "pipeline.json")
    if p:
        print(f"The reference claim ({p['reference_source']}):")
        print(f"  {p['reference_claim']}.")
    print()
    print("Measured natively on the host's own cores (these figures are the machine's):")
    goals("engine", load(out, "zcard-engine.json"),
          "the card's engine is measured on the host (make demo, make bench)")
    goals("IPC", load(out, "ipc.json"), "see the shm bench above")
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
    goals("RDMA", load(out, "rdma.json"), "see the RDMA bench above")


if __name__ == "__main__":
    main()
