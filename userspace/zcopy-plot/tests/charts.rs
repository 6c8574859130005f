//! The charts as drawn: what the SVG says, read back.

use zcopy_plot::{bars, lines, size, Bars, Chart, Error, Lines, Series, Unit};

/// The `stroke` of every `<polyline>` drawn `width` wide, in document order.
fn strokes(svg: &str, width: u32) -> Vec<String> {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.contains(&format!("stroke-width=\"{width}\"")))
        .filter_map(|p| {
            let at = p.find("stroke=\"#")? + "stroke=\"".len();
            Some(p[at..at + 7].to_string())
        })
        .collect()
}

/// The text of every `<text>` element, in document order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

fn latency() -> Lines {
    let series = |name: &str, base: f64, growth: f64| Series {
        name: name.into(),
        points: [64.0, 4096.0, 262144.0, 4194304.0]
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, base * growth.powi(i as i32)))
            .collect(),
    };
    Lines {
        title: "one-way latency".into(),
        note: "a note".into(),
        value: "latency, p50".into(),
        sizes: "message size".into(),
        unit: Unit::Seconds,
        series: vec![
            series("floor", 200e-9, 1.0),
            series("zcopy-busy", 550e-9, 1.0),
            Series {
                name: "nothing measured".into(),
                points: vec![(64.0, f64::NAN)],
            },
            series("pipe", 5e-6, 10.0),
        ],
    }
}

#[test]
fn every_drawn_line_has_one_legend_entry_in_its_own_colour() {
    let svg = lines(&latency()).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    let lines_drawn = strokes(&svg, 2);
    let swatches = strokes(&svg, 3);
    assert_eq!(lines_drawn.len(), 3, "one line per series with a value");
    assert_eq!(
        swatches, lines_drawn,
        "legend colours, in order, are the lines'"
    );
    let mut distinct = lines_drawn.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{lines_drawn:?}");
    // A series with nothing to draw keeps its colour's place: pipe is the
    // fourth series, in the fourth colour.
    assert_eq!(lines_drawn[2], "#D62728");
    let texts = texts(&svg);
    for name in ["floor", "zcopy-busy", "pipe"] {
        assert_eq!(
            texts.iter().filter(|t| *t == name).count(),
            1,
            "{name} once: {texts:?}"
        );
    }
    assert!(!texts.iter().any(|t| t == "nothing measured"), "{texts:?}");
    // The legend lists the lines in series order.
    let order: Vec<&String> = texts
        .iter()
        .filter(|t| ["floor", "zcopy-busy", "pipe"].contains(&t.as_str()))
        .collect();
    assert_eq!(order, ["floor", "zcopy-busy", "pipe"]);
}

#[test]
fn data_over_decades_gets_a_log_axis_with_units_at_whole_decades() {
    let svg = lines(&latency()).unwrap();
    let texts = texts(&svg);
    for label in [
        "100 ns", "1 µs", "10 µs", "1 ms", "64 B", "4 KiB", "256 KiB", "4 MiB",
    ] {
        assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t == "latency, p50 (log scale)"),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t == "message size (log scale)"),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t == "a note"), "{texts:?}");
}

#[test]
fn data_within_a_decade_gets_a_linear_axis_from_zero() {
    let chart = Lines {
        title: "bandwidth".into(),
        note: String::new(),
        value: "bandwidth".into(),
        sizes: "message size".into(),
        unit: Unit::BytesPerSecond,
        series: vec![Series {
            name: "ib_write_bw".into(),
            points: vec![(4096.0, 31.2e6), (65536.0, 49.7e6)],
        }],
    };
    let texts = texts(&lines(&chart).unwrap());
    assert!(texts.iter().any(|t| t == "0 B/s"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "50 MB/s"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "bandwidth"), "{texts:?}");
    assert!(!texts
        .iter()
        .any(|t| t.contains("log scale") && t.starts_with("band")));
}

#[test]
fn binary_units_get_ticks_round_in_their_own_prefix() {
    let mib = 1048576.0;
    let chart = |points: Vec<(f64, f64)>| Lines {
        title: "RDMA".into(),
        note: String::new(),
        value: "bandwidth".into(),
        sizes: "message size".into(),
        unit: Unit::BinaryBytesPerSecond,
        series: vec![Series {
            name: "ib_write_bw".into(),
            points,
        }],
    };
    let texts = texts(&lines(&chart(vec![(4096.0, 31.2 * mib), (65536.0, 49.7 * mib)])).unwrap());
    for label in ["0 B/s", "10 MiB/s", "50 MiB/s"] {
        assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
    }
    let texts = texts_of(&chart(vec![(4096.0, 3.0 * mib), (65536.0, 2048.0 * mib)]));
    for label in ["1 MiB/s", "10 MiB/s", "100 MiB/s", "1 GiB/s", "10 GiB/s"] {
        assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
    }
}

fn texts_of(chart: &Lines) -> Vec<String> {
    texts(&lines(chart).unwrap())
}

#[test]
fn bars_run_top_to_bottom_with_their_values() {
    let chart = Bars {
        title: "Serving 32 MiB".into(),
        note: "median of 3 runs".into(),
        value: "time".into(),
        unit: Unit::Seconds,
        bars: vec![("read+write".into(), 0.178), ("card -> RDMA".into(), 0.669)],
    };
    let svg = bars(&chart).unwrap();
    let texts = texts(&svg);
    let at = |s: &str| {
        texts
            .iter()
            .position(|t| t == s)
            .unwrap_or_else(|| panic!("{s}: {texts:?}"))
    };
    assert!(at("178 ms") < at("669 ms"));
    assert!(svg.contains("card -&gt; RDMA"), "escaped");
    for s in [
        "read+write",
        "0 s",
        "time",
        "median of 3 runs",
        "Serving 32 MiB",
    ] {
        at(s);
    }
}

#[test]
fn nothing_to_draw_is_an_error_not_an_empty_picture() {
    let mut chart = latency();
    chart.series.retain(|s| s.name == "nothing measured");
    assert!(matches!(lines(&chart), Err(Error::NoData(_))));
    let chart = Bars {
        title: "t".into(),
        note: String::new(),
        value: "v".into(),
        unit: Unit::Seconds,
        bars: Vec::new(),
    };
    let e = bars(&chart).unwrap_err();
    assert_eq!(e.to_string(), "t: no value to plot");
}

#[test]
fn values_carry_their_unit() {
    let cases = [
        (Unit::Seconds, 542e-9, "542 ns"),
        (Unit::Seconds, 1.27e-3, "1.27 ms"),
        (Unit::Seconds, 5.26e-6, "5.26 µs"),
        (Unit::Seconds, 0.0, "0 s"),
        (Unit::Seconds, 0.669, "669 ms"),
        (Unit::BytesPerSecond, 48.4e6, "48.4 MB/s"),
        (Unit::BytesPerSecond, 21.7e12, "21.7 TB/s"),
        (Unit::BinaryBytesPerSecond, 47.5 * 1048576.0, "47.5 MiB/s"),
        (Unit::BinaryBytesPerSecond, 3.0 * 1073741824.0, "3 GiB/s"),
        (Unit::PerSecond("ops".into()), 95_340.0, "95.3 k ops/s"),
        (Unit::PerSecond("ops".into()), 12.0, "12 ops/s"),
    ];
    for (unit, v, want) in cases {
        assert_eq!(unit.format(v), want, "{unit:?} {v}");
    }
    assert_eq!(size(64.0), "64 B");
    assert_eq!(size(4194304.0), "4 MiB");
    assert_eq!(size(1536.0), "1.5 KiB");
}

#[test]
fn a_chart_kept_as_json_draws_the_same() {
    let mut chart = latency();
    chart.series.retain(|s| s.name != "nothing measured");
    let chart = Chart::Lines(chart);
    let text = serde_json::to_string(&chart).unwrap();
    assert!(
        text.starts_with(r#"{"lines":{"title":"one-way latency""#),
        "{text}"
    );
    let back: Chart = serde_json::from_str(&text).unwrap();
    assert_eq!(back, chart);
    assert_eq!(back.render().unwrap(), chart.render().unwrap());
}

#[test]
fn series_past_the_palette_are_dashed_with_triangles_not_lookalikes() {
    let flat = |i: usize| Series {
        name: format!("s{i}"),
        points: vec![
            (64.0, (i + 1) as f64 * 1e-6),
            (4096.0, (i + 1) as f64 * 1e-6),
        ],
    };
    let mut chart = latency();
    chart.series = (0..12).map(flat).collect();
    let svg = lines(&chart).unwrap();
    // Series 0 and 10 share a colour: 0 is one solid line, 10 is drawn
    // in dashes (several pieces) and its points and legend entry are
    // triangles, which no series of the first ten has.
    let first = strokes(&svg, 2)[0].clone();
    let pieces = strokes(&svg, 2).iter().filter(|c| **c == first).count();
    assert!(pieces > 2, "series 0 once, series 10 in dashes: {pieces}");
    let triangles = svg.matches("<polygon").count();
    assert_eq!(
        triangles,
        2 * 3,
        "2 points and 1 legend entry, series 10 and 11"
    );
    let mut ten = latency();
    ten.series = (0..10).map(flat).collect();
    assert_eq!(lines(&ten).unwrap().matches("<polygon").count(), 0);
}
