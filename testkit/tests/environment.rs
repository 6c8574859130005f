//! The tree's environment variables against their one table,
//! docs/environment.md: every `ZCOPY_` variable something in the tree
//! reads is in the table, everything in the table is still used, and every
//! `ZCOPY_` knob that the workflow, a Makefile or a script sets for another
//! program is read by something (a knob nothing reads is a test that does
//! not run as its caller believes: the nightly's proptest cases were one).
//!
//! What counts as a read, by language:
//! - shell: an expansion with a default or a check, `${ZCOPY_X:-…}`,
//!   `${ZCOPY_X-…}`, `${ZCOPY_X:?…}`, `${ZCOPY_X:+…}`, `${ZCOPY_X:=…}`
//!   (the scripts read every environment variable that way; a plain
//!   `$ZCOPY_X` is a variable of the script's own);
//! - Rust: `var("ZCOPY_X")`, `var_os("ZCOPY_X")`, or a `const` whose value
//!   is the name (`const BENCH_DIR_ENV: &str = "ZCOPY_BENCH_DIR"`);
//! - make: `$(ZCOPY_X)` in a Makefile that does not assign it.
//!
//! And a set: `ZCOPY_X:` in a workflow's `env`, `ZCOPY_X=` in a workflow's
//! commands, a Makefile, or a script (`env ZCOPY_X=…`, `ZCOPY_X=… cmd`,
//! `export ZCOPY_X=…`), `--setenv ZCOPY_X`, and `.env("ZCOPY_X", …)` in Rust.
//! A shell assignment of a script's own variable (`ZCOPY_X=…` alone on its
//! line or after `cond &&`, and never exported) is not a set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use zcopy_testkit::repo_root;

/// Where a name is read or set: file and line, for the messages.
type Places = BTreeMap<String, Vec<String>>;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Lang {
    Shell,
    Rust,
    Make,
    Workflow,
}

/// The files that can read or set a variable, with their language.
fn sources(root: &Path) -> Vec<(PathBuf, Lang)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                let skip = name == "target"
                    || (name.starts_with('.') && name != ".github" && name != ".ci");
                if !skip {
                    dirs.push(path);
                }
                continue;
            }
            // This file's own examples are not the tree's variables.
            if !kind.is_file() || path.ends_with("testkit/tests/environment.rs") {
                continue;
            }
            let lang = if name.ends_with(".sh") {
                Lang::Shell
            } else if name.ends_with(".rs") {
                Lang::Rust
            } else if name == "Makefile" || name.ends_with(".mk") || name == "Kbuild" {
                Lang::Make
            } else if name.ends_with(".yml")
                && path
                    .parent()
                    .is_some_and(|p| p.ends_with(".github/workflows"))
            {
                Lang::Workflow
            } else if std::fs::read(&path).is_ok_and(|b| {
                b.starts_with(b"#!")
                    && b.split(|&c| c == b'\n')
                        .next()
                        .is_some_and(|l| l.ends_with(b"sh"))
            }) {
                Lang::Shell
            } else {
                continue;
            };
            out.push((path, lang));
        }
    }
    out.sort();
    out
}

/// Every `ZCOPY_` name in `line` with the byte offset where it starts.
fn names(line: &str) -> Vec<(usize, &str)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(k) = line[i..].find("ZCOPY_") {
        let start = i + k;
        let mut end = start + "ZCOPY_".len();
        while end < b.len()
            && (b[end].is_ascii_uppercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        let glued = start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if end > start + "ZCOPY_".len() && !glued {
            out.push((start, &line[start..end]));
        }
        i = end;
    }
    out
}

/// Whether a command follows the shell word that starts `rest` (the value
/// of an assignment at the start of a line): `v cmd` yes, `v`, `v; x` or
/// `v # note` no. Quotes, `$(…)` and `${…}` are part of the word.
fn has_command_after(rest: &str) -> bool {
    let (mut quote, mut depth, mut escaped) = (None, 0usize, false);
    for (i, c) in rest.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') if quote != Some('\'') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (_, '(' | '{') if quote != Some('\'') => depth += 1,
            (_, ')' | '}') if quote != Some('\'') && depth > 0 => depth -= 1,
            (None, ' ' | '\t') if depth == 0 => {
                let next = rest[i..].trim_start();
                return !(next.is_empty() || next.starts_with([';', '#', '&', '|']));
            }
            (None, ';') if depth == 0 => return false,
            _ => {}
        }
    }
    false
}

/// What `line` (in a file of `lang`) reads and sets.
fn classify(
    lang: Lang,
    line: &str,
    make_assigned: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let (mut reads, mut sets) = (Vec::new(), Vec::new());
    let code = match lang {
        Lang::Rust => line.split("//").next().unwrap_or(""),
        _ if line.trim_start().starts_with('#') => "",
        _ => line,
    };
    for (at, name) in names(code) {
        let before = &code[..at];
        let after = &code[at + name.len()..];
        let name_s = name.to_string();
        match lang {
            Lang::Shell => {
                if before.ends_with("${")
                    && [":-", "-", ":?", "?", ":+", "+", ":=", "="]
                        .iter()
                        .any(|op| after.starts_with(op))
                {
                    reads.push(name_s);
                } else if after.starts_with('=') && !before.ends_with(['$', '{', '^', '/']) {
                    let t = before.trim_end();
                    // `NAME=v` alone (or `local NAME=v`, or after `cond &&`)
                    // is the script's own; `NAME=v cmd` sets it for cmd.
                    let alone = t.is_empty() || t.ends_with("&&") || t.ends_with("||");
                    let own = (alone && !has_command_after(&after[1..]))
                        || t.ends_with("local")
                        || t.ends_with("readonly");
                    if !own {
                        sets.push(name_s);
                    }
                } else if before.trim_end().ends_with("--setenv") {
                    sets.push(name_s);
                }
            }
            Lang::Rust => {
                if before.ends_with('"') && after.starts_with('"') {
                    let b = before[..before.len() - 1].trim_end();
                    if b.ends_with("var(")
                        || b.ends_with("var_os(")
                        || (b.ends_with('=') && b.contains("const "))
                    {
                        reads.push(name_s);
                    } else if b.ends_with(".env(") {
                        sets.push(name_s);
                    }
                }
            }
            Lang::Make => {
                if (before.ends_with("$(") && after.starts_with(')'))
                    || (before.ends_with("${") && after.starts_with('}'))
                {
                    if !make_assigned.contains(name) {
                        reads.push(name_s);
                    }
                } else if after.trim_start().starts_with('=')
                    || after.starts_with(":=")
                    || after.starts_with("?=")
                    || before.trim_end().ends_with("export")
                {
                    sets.push(name_s);
                }
            }
            Lang::Workflow => {
                if after.starts_with(':') || after.starts_with('=') {
                    sets.push(name_s);
                }
            }
        }
    }
    (reads, sets)
}

/// What the tree reads and sets: name → places.
fn scan(root: &Path) -> (Places, Places) {
    let (mut reads, mut sets) = (Places::new(), Places::new());
    for (path, lang) in sources(root) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        // A make variable the Makefile assigns itself is its own, not the environment's.
        let make_assigned: BTreeSet<String> = if lang == Lang::Make {
            text.lines()
                .filter_map(|l| {
                    let (name, rest) = l
                        .trim_start()
                        .split_once(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
                    let rest = rest.trim_start();
                    (rest.starts_with('=') || rest.starts_with(":=") || rest.starts_with("?="))
                        .then(|| name.to_string())
                })
                .collect()
        } else {
            BTreeSet::new()
        };
        for (n, line) in text.lines().enumerate() {
            let (r, s) = classify(lang, line, &make_assigned);
            for name in r {
                reads
                    .entry(name)
                    .or_default()
                    .push(format!("{rel}:{}", n + 1));
            }
            for name in s {
                sets.entry(name)
                    .or_default()
                    .push(format!("{rel}:{}", n + 1));
            }
        }
    }
    (reads, sets)
}

/// The names in the table of docs/environment.md (rows `| `ZCOPY_X` | …`).
fn table(root: &Path) -> BTreeSet<String> {
    let path = root.join("docs/environment.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once('`')
                .map(|(n, _)| n.to_string())
        })
        .filter(|n| n.starts_with("ZCOPY_"))
        .collect()
}

#[test]
fn every_variable_read_is_in_the_table() {
    let root = repo_root();
    let (reads, _) = scan(&root);
    let listed = table(&root);
    let missing: Vec<String> = reads
        .iter()
        .filter(|(n, _)| !listed.contains(*n))
        .map(|(n, at)| format!("{n} (read at {})", at.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/environment.md lacks:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_variable_in_the_table_is_read() {
    let root = repo_root();
    let (reads, _) = scan(&root);
    let stale: Vec<String> = table(&root)
        .into_iter()
        .filter(|n| !reads.contains_key(n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/environment.md lists what nothing reads: {stale:?}"
    );
}

#[test]
fn every_knob_set_is_read() {
    let (reads, sets) = scan(&repo_root());
    let unread: Vec<String> = sets
        .iter()
        .filter(|(n, _)| !reads.contains_key(*n))
        .map(|(n, at)| format!("{n} (set at {})", at.join(", ")))
        .collect();
    assert!(
        unread.is_empty(),
        "set but read by nothing:\n  {}",
        unread.join("\n  ")
    );
}

#[test]
fn the_rules_see_reads_and_sets() {
    let none = BTreeSet::new();
    let c = |lang, line| classify(lang, line, &none);
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        c(
            Lang::Shell,
            r#"x=${ZCOPY_A:-1} y=${ZCOPY_B:?need} ${ZCOPY_C+x}"#
        ),
        (v(&["ZCOPY_A", "ZCOPY_B", "ZCOPY_C"]), v(&[]))
    );
    assert_eq!(c(Lang::Shell, r#"ZCOPY_OWN=1"#), (v(&[]), v(&[])));
    assert_eq!(
        c(Lang::Shell, r#"ZCOPY_OWN="a b" # note"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Shell, r#"ZCOPY_OWN=$(cd "$x" && pwd); y"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Shell, r#"ZCOPY_A="x y" "$r/run.sh" --a"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Shell, r#"	ZCOPY_A=$n ZCOPY_B=${x:-1} cmd"#),
        (v(&[]), v(&["ZCOPY_A", "ZCOPY_B"]))
    );
    assert_eq!(c(Lang::Shell, r#"	local ZCOPY_OWN=1"#), (v(&[]), v(&[])));
    assert_eq!(
        c(Lang::Shell, r#"[ "$k" = b ] && ZCOPY_OWN=forky"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Shell, r#"[ "$k" = b ] && ZCOPY_A=1 cmd"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(c(Lang::Shell, r#"echo "$ZCOPY_OWN""#), (v(&[]), v(&[])));
    assert_eq!(
        c(Lang::Shell, r#"--rwdir "$ZCOPY_A=$ZCOPY_A""#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Shell, r#"sed -n 's/^ZCOPY_A=//p' f"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Shell, r#"env ZCOPY_A=1 ZCOPY_B="$x" cmd"#),
        (v(&[]), v(&["ZCOPY_A", "ZCOPY_B"]))
    );
    assert_eq!(
        c(Lang::Shell, r#"export ZCOPY_A=1"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Shell, r#"	--setenv ZCOPY_A "$x""#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Shell, r#"# ${ZCOPY_A:-1} in a comment"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(
            Lang::Rust,
            r#"std::env::var("ZCOPY_A").ok(); var_os("ZCOPY_B")"#
        ),
        (v(&["ZCOPY_A", "ZCOPY_B"]), v(&[]))
    );
    assert_eq!(
        c(Lang::Rust, r#"pub const X_ENV: &str = "ZCOPY_A";"#),
        (v(&["ZCOPY_A"]), v(&[]))
    );
    assert_eq!(
        c(Lang::Rust, r#"cmd.env("ZCOPY_A", "1"); // var("ZCOPY_B")"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Rust, r#"eprintln!("ZCOPY_A=1 replays")"#),
        (v(&[]), v(&[]))
    );
    assert_eq!(
        c(Lang::Make, r#"KDIR ?= $(or $(ZCOPY_A),x)"#),
        (v(&["ZCOPY_A"]), v(&[]))
    );
    assert_eq!(
        c(Lang::Make, r#"	ZCOPY_A='$(ONLY)' ci/x.sh"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Workflow, r#"      ZCOPY_A: /x"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Workflow, r#"        run: ZCOPY_A=1 make x"#),
        (v(&[]), v(&["ZCOPY_A"]))
    );
    assert_eq!(
        c(Lang::Shell, r#"NOT_ZCOPY_A=${XZCOPY_B:-}"#),
        (v(&[]), v(&[]))
    );
}
