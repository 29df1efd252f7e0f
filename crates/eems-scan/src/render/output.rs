//! Where a report goes: a file written beside its target and renamed into place at the
//! end (never half-written under the final name), or stdout for `-`. A report that is
//! dropped without `commit` (an error anywhere in the run) leaves nothing behind.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A report destination as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    pub fn parse(s: &str) -> Destination {
        if s == "-" {
            Destination::Stdout
        } else {
            Destination::File(PathBuf::from(s))
        }
    }

    /// Checks before any server is contacted that the report can be written, and that it
    /// would not overwrite an input.
    pub fn preflight(&self, inputs: &[&Path]) -> Result<(), String> {
        let Destination::File(path) = self else {
            return Ok(());
        };
        if path.is_dir() {
            return Err(format!(
                "{}: is a directory, not a report file",
                path.display()
            ));
        }
        for input in inputs {
            if same_file(path, input) {
                return Err(format!(
                    "{}: the report would overwrite the input file {}",
                    path.display(),
                    input.display()
                ));
            }
        }
        // The file `open` will create proves the directory accepts it; dropped at once.
        temp_beside(path)
            .map(drop)
            .map_err(|e| format!("{}: cannot write a report there: {e}", path.display()))
    }

    /// Opens the destination for streaming.
    pub fn open(&self) -> io::Result<Output> {
        match self {
            Destination::Stdout => Ok(Output {
                inner: Inner::Stdout(io::stdout()),
            }),
            Destination::File(path) => {
                let tmp = temp_beside(path).map_err(|e| with_path(path, e))?;
                Ok(Output {
                    inner: Inner::File {
                        w: BufWriter::new(tmp),
                        target: path.clone(),
                    },
                })
            }
        }
    }
}

/// A `.<name>.XXXXXX.partial` file in the target's directory (a rename never crosses
/// file systems), with the permissions `File::create` would give the report. Only a
/// second Ctrl-C, which skips every destructor, leaves one behind.
fn temp_beside(path: &Path) -> io::Result<NamedTempFile> {
    let prefix = match path.file_name() {
        Some(n) => format!(".{}.", n.to_string_lossy()),
        None => ".report.".into(),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(parent_dir(path))
}

/// The error with the report's path in front, so the message says which report failed.
fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether two paths name the same file (also when neither exists yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        // The report does not exist yet: compare the directory and the name instead.
        _ => match (
            std::fs::canonicalize(parent_dir(a)),
            std::fs::canonicalize(parent_dir(b)),
        ) {
            (Ok(x), Ok(y)) => x == y && a.file_name() == b.file_name(),
            _ => false,
        },
    }
}

/// An open report. `commit` renames the finished file into place; dropping it without
/// a commit deletes the temporary file.
pub struct Output {
    inner: Inner,
}

enum Inner {
    Stdout(io::Stdout),
    File {
        w: BufWriter<NamedTempFile>,
        target: PathBuf,
    },
}

impl Output {
    /// Every error names the report's path and carries the OS error.
    pub fn commit(self) -> io::Result<()> {
        match self.inner {
            Inner::Stdout(mut s) => s.flush().map_err(|e| with_path(Path::new("stdout"), e)),
            Inner::File { w, target } => {
                let tmp = w
                    .into_inner()
                    .map_err(|e| with_path(&target, e.into_error()))?;
                tmp.as_file()
                    .sync_all()
                    .map_err(|e| with_path(&target, e))?;
                tmp.persist(&target).map(drop).map_err(|e| {
                    let why = format!("cannot move the finished report into place: {}", e.error);
                    with_path(&target, io::Error::new(e.error.kind(), why))
                })
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Stdout(s) => s.write(buf).map_err(|e| with_path(Path::new("stdout"), e)),
            Inner::File { w, target } => w.write(buf).map_err(|e| with_path(target, e)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout(s) => s.flush().map_err(|e| with_path(Path::new("stdout"), e)),
            Inner::File { w, target } => w.flush().map_err(|e| with_path(target, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_appears_only_on_commit() {
        let dir = std::env::temp_dir().join(format!("eems-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("r.csv");
        let d = Destination::File(target.clone());
        d.preflight(&[]).unwrap();
        let mut o = d.open().unwrap();
        o.write_all(b"a,b\n").unwrap();
        assert!(!target.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "a,b\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_uncommitted_report_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let d = Destination::File(dir.path().join("r.json"));
        d.preflight(&[]).unwrap();
        let mut o = d.open().unwrap();
        o.write_all(b"{").unwrap();
        o.flush().unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files(), 1, "the temporary file exists while open");
        drop(o);
        assert_eq!(files(), 0);
    }

    #[test]
    fn a_failed_commit_names_the_report_and_the_os_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.csv");
        let d = Destination::File(target.clone());
        let mut o = d.open().unwrap();
        o.write_all(b"a,b\n").unwrap();
        // Something took the name while the scan ran.
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "").unwrap();
        let e = o.commit().unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", target.display())), "{e}");
        assert!(e.contains("os error"), "{e}");
        // Only the directory that took the name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_overwrite_the_inventory() {
        let dir = std::env::temp_dir().join(format!("eems-out2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inv = dir.join("inv.csv");
        std::fs::write(&inv, "name\nEX1\n").unwrap();
        let e = Destination::File(inv.clone())
            .preflight(&[inv.as_path()])
            .unwrap_err();
        assert!(e.contains("overwrite the input"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_directory_is_detected() {
        let e = Destination::File(PathBuf::from("/nonexistent-dir-eems/r.json"))
            .preflight(&[])
            .unwrap_err();
        assert!(e.contains("/nonexistent-dir-eems/r.json"), "{e}");
    }
}
