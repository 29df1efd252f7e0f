//! Where a report goes: a file written beside its target and renamed into place at the
//! end (never half-written under the final name), or stdout for `-`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

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
        let dir = parent_dir(path);
        // A probe file proves the directory accepts new files (the rename target's).
        let probe = dir.join(format!(".eems-scan-write-test-{}", std::process::id()));
        File::create(&probe)
            .map_err(|e| format!("{}: cannot write a report there: {e}", path.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Opens the destination for streaming.
    pub fn open(&self) -> io::Result<Output> {
        match self {
            Destination::Stdout => Ok(Output {
                inner: Inner::Stdout(io::stdout()),
            }),
            Destination::File(path) => {
                let dir = parent_dir(path);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let tmp = dir.join(format!(
                    ".{}.{}.partial",
                    name.unwrap_or_else(|| "report".into()),
                    std::process::id()
                ));
                let file = File::create(&tmp)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", tmp.display())))?;
                Ok(Output {
                    inner: Inner::File {
                        w: BufWriter::new(file),
                        tmp,
                        target: path.clone(),
                    },
                })
            }
        }
    }
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

/// An open report. `commit` renames the finished file into place.
pub struct Output {
    inner: Inner,
}

enum Inner {
    Stdout(io::Stdout),
    File {
        w: BufWriter<File>,
        tmp: PathBuf,
        target: PathBuf,
    },
}

impl Output {
    pub fn commit(self) -> io::Result<()> {
        match self.inner {
            Inner::Stdout(mut s) => s.flush(),
            Inner::File { w, tmp, target } => {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                drop(file);
                std::fs::rename(&tmp, &target).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot move {} to {}: {e}", tmp.display(), target.display()),
                    )
                })
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Stdout(s) => s.write(buf),
            Inner::File { w, .. } => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout(s) => s.flush(),
            Inner::File { w, .. } => w.flush(),
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
