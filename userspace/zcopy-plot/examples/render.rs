//! Draws a chart kept as JSON: `render CHART.json OUT.svg`.
//!
//! The JSON is a [`zcopy_plot::Chart`]: `{"lines": {...}}` or
//! `{"bars": {...}}`, the fields of [`zcopy_plot::Lines`] and
//! [`zcopy_plot::Bars`].

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: render CHART.json OUT.svg");
        std::process::exit(2);
    };
    let run = || -> Result<(), String> {
        let text = std::fs::read_to_string(input).map_err(|e| format!("{input}: {e}"))?;
        let chart: zcopy_plot::Chart =
            serde_json::from_str(&text).map_err(|e| format!("{input}: {e}"))?;
        let svg = chart.render().map_err(|e| e.to_string())?;
        std::fs::write(output, svg).map_err(|e| format!("{output}: {e}"))
    };
    if let Err(e) = run() {
        eprintln!("render: {e}");
        std::process::exit(1);
    }
}
