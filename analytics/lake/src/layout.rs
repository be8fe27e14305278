//! Paths, names and the writer lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{io_err, LakeError, LakeResult};

/// A lake rooted at a folder.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

/// Held while writing; released on drop.
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn clicks_root(&self) -> PathBuf {
        self.root.join("clicks")
    }

    pub fn daily_root(&self) -> PathBuf {
        self.root.join("daily")
    }

    /// The `daily` rollup of a day: per link.
    pub fn daily_file(&self, date: &str) -> PathBuf {
        self.daily_dir(date).join("daily.parquet")
    }

    /// The `dims` rollup of a day: per link, dimension and value.
    pub fn dims_file(&self, date: &str) -> PathBuf {
        self.dims_dir(date).join("dims.parquet")
    }

    pub fn dims_root(&self) -> PathBuf {
        self.root.join("dims")
    }

    pub fn dims_dir(&self, date: &str) -> PathBuf {
        self.dims_root().join(format!("date={date}"))
    }

    pub fn clicks_dir(&self, date: &str) -> PathBuf {
        self.clicks_root().join(format!("date={date}"))
    }

    pub fn daily_dir(&self, date: &str) -> PathBuf {
        self.daily_root().join(format!("date={date}"))
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join("_staging")
    }

    /// Creates the folders and takes the writer lock, failing at once if
    /// another process holds it. Leftovers of an interrupted run in
    /// `_staging/` are removed: they were never visible to readers.
    pub fn lock(&self) -> LakeResult<LakeLock> {
        for dir in [
            self.clicks_root(),
            self.daily_root(),
            self.dims_root(),
            self.staging(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LakeError::Locked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        let staging = self.staging();
        for entry in std::fs::read_dir(&staging).map_err(io_err(&staging))? {
            let entry = entry.map_err(io_err(&staging))?;
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        Ok(LakeLock { _file: file })
    }

    /// Dates that have a clicks folder, in order.
    pub fn click_dates(&self) -> LakeResult<Vec<String>> {
        let root = self.clicks_root();
        let mut dates = Vec::new();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dates),
            Err(e) => return Err(io_err(&root)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&root))?;
            if let Some(date) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("date="))
            {
                dates.push(date.to_owned());
            }
        }
        dates.sort();
        Ok(dates)
    }

    /// The Parquet files of one day's clicks, sorted by name.
    pub fn click_files(&self, date: &str) -> LakeResult<Vec<PathBuf>> {
        list_parquet(&self.clicks_dir(date))
    }
}

pub(crate) fn list_parquet(dir: &Path) -> LakeResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let p = entry.map_err(io_err(dir))?.path();
        if p.extension().is_some_and(|e| e == "parquet") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// `clicks-<first>-<last>.parquet`, zero-padded so names sort by range.
/// `source` distinguishes inputs with their own numbering (e.g. a Kafka
/// topic and partition); the spool uses none.
pub fn range_file_name(source: Option<&str>, first: i64, last: i64) -> String {
    match source {
        None => format!("clicks-{first:020}-{last:020}.parquet"),
        Some(s) => format!("clicks-{s}-{first:020}-{last:020}.parquet"),
    }
}

/// The `(source, first, last)` a file name was built from.
pub fn parse_range(file_name: &str) -> Option<(Option<String>, i64, i64)> {
    let stem = file_name
        .strip_prefix("clicks-")?
        .strip_suffix(".parquet")?;
    let mut parts: Vec<&str> = stem.rsplitn(3, '-').collect();
    parts.reverse();
    match parts.as_slice() {
        [first, last] => Some((None, first.parse().ok()?, last.parse().ok()?)),
        [source, first, last] => Some((
            Some((*source).to_owned()),
            first.parse().ok()?,
            last.parse().ok()?,
        )),
        _ => None,
    }
}

/// Fsyncs a folder so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> LakeResult<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = range_file_name(None, 1, 42);
        assert_eq!(
            n,
            "clicks-00000000000000000001-00000000000000000042.parquet"
        );
        assert_eq!(parse_range(&n), Some((None, 1, 42)));
        let k = range_file_name(Some("clicks.p3"), 10, 20);
        assert_eq!(parse_range(&k), Some((Some("clicks.p3".into()), 10, 20)));
        assert_eq!(parse_range("daily.parquet"), None);
    }

    #[test]
    fn second_lock_fails() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let _held = lake.lock().unwrap();
        assert!(matches!(lake.lock(), Err(LakeError::Locked(_))));
    }
}
