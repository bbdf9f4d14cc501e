//! proxdeck's own log files in the data dir (`logs/worker.log`, `logs/tui.log`): what the worker
//! and the dashboard report through `tracing`, where no terminal shows it. Bounded in size: when
//! a file passes its limit it becomes `NAME.1` (the one before is dropped) and a new one starts,
//! so two files at most are kept.
//!
//! Owns the file handling only; what is logged, and at which level, is the caller's.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Each file's limit before it is rotated.
pub const MAX_BYTES: u64 = 5 * 1024 * 1024;

/// An append-only file that rotates itself at `max_bytes`.
pub struct BoundedFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    written: u64,
}

impl BoundedFile {
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<BoundedFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(BoundedFile {
            path: path.to_path_buf(),
            max_bytes,
            file: Some(file),
            written,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, PathBuf::from(old))?;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.written = 0;
        Ok(())
    }
}

impl Write for BoundedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.max_bytes && self.written > 0 {
            self.rotate()?;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the log file could not be reopened"))?;
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Sends `tracing` output (level from `PROXDECK_LOG`, default `info`) to `path`, bounded.
/// Returns false when the file cannot be opened (the caller carries on without a log).
pub fn init(path: &Path) -> bool {
    let Ok(file) = BoundedFile::open(path, MAX_BYTES) else {
        return false;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROXDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_rotates_and_two_files_at_most_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("worker.log");
        let mut f = BoundedFile::open(&path, 100).unwrap();
        for i in 0..30 {
            writeln!(f, "line {i:03} of the worker's log").unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let previous = std::fs::read_to_string(dir.path().join("logs/worker.log.1")).unwrap();
        assert!(current.len() <= 100 && previous.len() <= 100);
        assert!(
            current.ends_with("line 029 of the worker's log\n"),
            "{current}"
        );
        assert!(previous.contains("line 02"), "{previous}");
        let files = std::fs::read_dir(dir.path().join("logs")).unwrap().count();
        assert_eq!(files, 2);
    }
}
