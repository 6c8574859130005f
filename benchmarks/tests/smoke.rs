//! The bench binary runs every mechanism and writes what it promises
//! (a quick run: small counts, no figures are judged here).

use std::process::Command;

#[test]
fn quick_run_writes_json_and_plots_for_every_mechanism() {
    let out = std::env::temp_dir().join(format!("zcopy-ipc-bench-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_zcopy-ipc-bench"))
        .args([
            "--quick",
            "--sizes",
            "64,65536",
            "--pin",
            "cross,same",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ipc.json")).unwrap()).unwrap();
    assert_eq!(doc["quick"], true);
    let points = doc["points"].as_array().unwrap();
    for m in [
        "floor",
        "floor-fill",
        "floor-header",
        "floor-index",
        "zcopy-busy",
        "zcopy-fill",
        "zcopy-blocking",
        "zcopy-futex",
        "copy-ring",
        "pipe",
        "uds",
        "mq",
    ] {
        for pin in ["cross", "same"] {
            for size in [64, 65536] {
                let p = points
                    .iter()
                    .find(|p| p["mechanism"] == m && p["pin"] == pin && p["size"] == size)
                    .unwrap_or_else(|| panic!("{m} {pin} {size} missing"));
                let measured = p["p50_ns"].as_u64().is_some_and(|v| v > 0);
                // mq refuses messages above fs.mqueue.msgsize_max and says so.
                assert!(
                    measured || p["latency_error"].is_string(),
                    "{m} {pin} {size}: {p}"
                );
                if m == "zcopy-busy" || m == "zcopy-fill" {
                    assert!(
                        measured && p["msgs_per_s"].as_f64().is_some_and(|v| v > 0.0),
                        "{p}"
                    );
                }
            }
        }
    }
    // The paired 64 B rounds (two in a quick run) and the one-thread costs.
    let rounds = &doc["rounds"];
    // The run has 64 B (not 4 MiB): the 64 B points of the paired goals,
    // the floor again after them.
    let named: Vec<&str> = rounds["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [
            "floor",
            "floor-header",
            "floor-index",
            "zcopy-busy",
            "zcopy-blocking",
            "floor"
        ]
    );
    assert_eq!(
        rounds["moved"].as_array().map(Vec::len),
        Some(2),
        "{rounds}"
    );
    let rows = rounds["p50_ns"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rounds}");
    assert!(rows
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .all(|v| v.as_u64() > Some(0)));
    // A round in which the host moved the two CPUs is left out of the
    // paired figures; with every round left out there is no cost to give.
    let all_moved = rounds["moved"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.as_bool() == Some(true));
    if all_moved {
        assert!(doc["index_cost"].is_null(), "{doc}");
    } else {
        assert!(doc["index_cost"].as_f64() > Some(0.0), "{doc}");
    }
    assert!(
        doc["one_thread"]["message_ns"].as_f64() > Some(0.0),
        "{doc}"
    );
    let idle = doc["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goal"].as_str().unwrap().starts_with("idle sender"))
        .unwrap();
    assert!(idle["ours"].as_f64() < idle["reference"].as_f64(), "{idle}");
    let goals = doc["goals"].as_array().unwrap();
    assert_eq!(goals.len(), 8);
    for g in goals {
        assert!(g["unit"].is_string(), "{g}");
        // A quick run shows a goal's figures and judges none of them.
        assert!(g["met"].is_null(), "{g}");
        assert!(g["value"].is_string(), "{g}");
        if g["ours"].is_number() && g["reference"].is_number() {
            assert!(g["value"].as_str().unwrap().contains(" vs "), "{g}");
        }
    }
    let svg = std::fs::read_to_string(out.join("ipc-latency-cross.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("zcopy-busy") && svg.contains("polyline"));
    assert!(out.join("ipc-throughput-same.svg").exists());
    let _ = std::fs::remove_dir_all(&out);
}
