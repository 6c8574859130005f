//! The Makefile hands shell text and test selections over as written:
//! `make qemu-exec CMD='…'` gives qemu/run.sh exactly CMD (make must not
//! expand the `$` in it), and `make qemu-test ONLY=… FILTER=…` sets
//! ZCOPY_ONLY and ZCOPY_FILTER for ci/qemu-test.sh. Checked on the
//! commands `make -n` prints (what make would give the shell), run with
//! stubs in place of the scripts: no toolbox, no guest boot.

use std::path::PathBuf;
use std::process::Command;

use zcopy_testkit::repo_root;

/// The commands `make -n ARGS` prints.
fn dry_run(args: &[&str]) -> String {
    let out = Command::new("make")
        .arg("-s")
        .arg("-n")
        .arg("-C")
        .arg(repo_root())
        .args(args)
        // Nothing of an outer make (make test) or of the caller's own
        // selection may leak in.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("ZCOPY_ONLY")
        .env_remove("ZCOPY_FILTER")
        .output()
        .expect("make runs");
    assert!(
        out.status.success(),
        "make -n {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A directory with an executable `stub` that prints `script`'s output.
struct Stub(PathBuf);

impl Stub {
    fn new(tag: &str, script: &str) -> Stub {
        let dir = std::env::temp_dir().join(format!("zcopy-make-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stub");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Stub(dir)
    }

    fn path(&self) -> String {
        self.0.join("stub").display().to_string()
    }

    /// Runs `commands` in bash, `script` replaced by the stub; its stdout.
    fn run(&self, commands: &str, script: &str) -> String {
        assert!(commands.contains(script), "{script} in {commands:?}");
        let commands = commands.replace(script, &self.path());
        let out = Command::new("bash")
            .arg("-c")
            .arg(&commands)
            .current_dir(repo_root())
            .env_remove("ZCOPY_ONLY")
            .env_remove("ZCOPY_FILTER")
            .output()
            .unwrap();
        assert!(out.status.success(), "{commands}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn qemu_exec_gives_the_runner_the_command_as_written() {
    let stub = Stub::new("exec", r#"printf '%s\0' "$@""#);
    for cmd in [
        "uname -r",
        r#"for d in /sys/class/misc/*; do echo $d; done"#,
        r#"echo "$HOME" ${PATH%%:*} $(id -u) `date` $$ $1"#,
        r#"echo it's 'quoted' "twice" \ back\\slash"#,
        "printf '%s,%s' a b; echo (a) [b] {c} ; #x",
        "a=1; echo $a$(a)$$(a)",
    ] {
        let commands = dry_run(&["qemu-exec", &format!("CMD={cmd}")]);
        let line = commands
            .lines()
            .find(|l| l.starts_with("qemu/run.sh"))
            .unwrap_or_else(|| panic!("no qemu/run.sh in {commands:?}"));
        let argv = stub.run(line, "qemu/run.sh");
        let argv: Vec<&str> = argv.strip_suffix('\0').unwrap().split('\0').collect();
        assert_eq!(argv, ["--", "sh", "-c", cmd], "CMD={cmd}");
    }
}

#[test]
fn qemu_test_passes_only_and_filter_as_written() {
    let stub = Stub::new(
        "test",
        r#"printf '%s|%s' "${ZCOPY_ONLY-unset}" "${ZCOPY_FILTER-unset}""#,
    );
    let seen = |args: &[&str]| {
        let mut all = vec!["qemu-test"];
        all.extend_from_slice(args);
        stub.run(&dry_run(&all), "ci/qemu-test.sh")
    };
    assert_eq!(seen(&[]), "unset|unset");
    assert_eq!(seen(&["ONLY=driver"]), "driver|unset");
    assert_eq!(
        seen(&["ONLY=driver card", "FILTER=pool_and_sqe"]),
        "driver card|pool_and_sqe"
    );
    assert_eq!(seen(&["FILTER=it's $x"]), "unset|it's $x");
}
