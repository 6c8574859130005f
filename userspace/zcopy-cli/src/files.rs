//! Files the commands make for themselves.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Names tried before giving up (a directory full of the same command's
/// leftovers).
const TRIES: u32 = 100;

/// Creates a file under a name no file has in `dir`: `name(0)`, else
/// `name(1)`, `name(2)`, … where the one before is taken (a file left by
/// a run that was killed, or made by a process of the same pid in another
/// pid namespace sharing the directory). `create` makes the file and fails
/// with `AlreadyExists` where a name is taken; nothing already there is
/// touched. Returns the path last tried and what `create` gave (an
/// error of another kind when every name was taken).
pub fn create_unique(
    dir: &Path,
    name: impl Fn(u32) -> std::ffi::OsString,
    create: impl Fn(&Path) -> std::io::Result<File>,
) -> (PathBuf, std::io::Result<File>) {
    let mut last = None;
    for n in 0..TRIES {
        let path = dir.join(name(n));
        match create(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(path),
            made => return (path, made),
        }
    }
    let path = last.expect("at least one name was tried");
    // Not AlreadyExists: that would say the caller's own name was taken.
    let e = std::io::Error::other(format!("{TRIES} names like it tried, every one taken"));
    (path, Err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_is_passed_over_and_left_as_it_was() {
        let dir = std::env::temp_dir().join(format!("zcopy-unique-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let create = |p: &Path| File::options().write(true).create_new(true).open(p);
        let name = |n: u32| format!("f-{n}").into();
        std::fs::write(dir.join("f-0"), b"theirs").unwrap();
        let (path, made) = create_unique(&dir, name, create);
        assert!(made.is_ok());
        assert_eq!(path, dir.join("f-1"));
        assert_eq!(std::fs::read(dir.join("f-0")).unwrap(), b"theirs");
        for n in 2..TRIES {
            std::fs::write(dir.join(format!("f-{n}")), b"").unwrap();
        }
        let (_, made) = create_unique(&dir, name, create);
        let e = made.unwrap_err();
        assert!(e.to_string().contains("every one taken"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
