//! The secret keys of visitor hashes, one per UTC day.
//!
//! `visitor_id` is a keyed hash of (IP, user agent): with the day's key, a
//! lake row and a guessed IP can be checked against each other. So the keys
//! live apart from everything a lake or spool reader opens: in their own
//! directory (mode 0700), one file per day (mode 0600), and a day's key is
//! deleted as soon as the next day's key is made. After that, nobody, this
//! service included, can link a visitor id to an IP or to another day.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Days since 1970-01-01 (UTC) of a millisecond timestamp.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(snowlink_events::MS_PER_DAY)
}

/// The key directory.
#[derive(Debug, Clone)]
pub struct VisitorKeys {
    dir: PathBuf,
}

impl VisitorKeys {
    /// Opens (or creates) `dir` and makes it private to this user.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, day: i64) -> PathBuf {
        self.dir.join(format!("{day}.key"))
    }

    /// The days that have a key file.
    pub fn days(&self) -> std::io::Result<Vec<i64>> {
        let mut days = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(day) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|d| d.parse().ok())
            {
                days.push(day);
            }
        }
        days.sort_unstable();
        Ok(days)
    }

    /// The key of `day`, made on first use; making it deletes every older
    /// day's key. A click of a day whose key is already gone (one that
    /// waited past midnight) gets a one-off key that is never written, so
    /// its visitor id links to nothing.
    pub fn key(&self, day: i64) -> std::io::Result<[u8; 16]> {
        let path = self.path(day);
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == 16 => {
                return Ok(bytes.try_into().expect("16 bytes"));
            }
            Ok(_) => tracing::warn!(path = %path.display(), "damaged visitor key replaced"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let days = self.days()?;
        if days.iter().any(|d| *d > day) {
            return Ok(rand::random());
        }
        let key: [u8; 16] = rand::random();
        let tmp = self.dir.join(format!(".{day}.key.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&key)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        for old in days.into_iter().filter(|d| *d < day) {
            match fs::remove_file(self.path(old)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_key_is_stable_private_and_deleted_when_the_day_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let keys = VisitorKeys::open(dir.path().join("keys")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(keys.dir()), 0o700);
        let a = keys.key(100).unwrap();
        assert_eq!(keys.key(100).unwrap(), a, "stable within the day");
        assert_eq!(mode(&keys.path(100)), 0o600);
        let b = keys.key(101).unwrap();
        assert_ne!(a, b);
        assert_eq!(keys.days().unwrap(), [101], "the day before is deleted");
        // A late click of day 100 gets a key that is never kept.
        let late = keys.key(100).unwrap();
        assert_ne!(late, a);
        assert_eq!(keys.days().unwrap(), [101]);
        // Reopening keeps the current day's key.
        let again = VisitorKeys::open(dir.path().join("keys")).unwrap();
        assert_eq!(again.key(101).unwrap(), b);
    }
}
