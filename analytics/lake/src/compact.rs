//! Compaction: the small files of a day become one file per source, and the
//! day's folder is swapped for the new one in a single atomic rename
//! (`renameat2(RENAME_EXCHANGE)`), so a reader lists either all the old files
//! or the new one, never both and never neither.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use snowlink_events::arrow::{click_schema, from_record_batch};
use snowlink_events::ClickEvent;

use crate::layout::sync_dir;
use crate::write::{click_writer_properties, sorted_batches, write_parquet};
use crate::{io_err, parse_range, range_file_name, Lake, LakeError, LakeResult};

#[derive(Debug, Clone, Default)]
pub struct CompactStats {
    pub days: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: u64,
}

fn read_events(path: &Path) -> LakeResult<Vec<ClickEvent>> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut events = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        events.extend(from_record_batch(&batch?)?);
    }
    Ok(events)
}

/// Compacts every day that has more than one file from the same source.
/// The caller must hold the lake lock.
pub fn compact(lake: &Lake, mut progress: impl FnMut(&str)) -> LakeResult<CompactStats> {
    let mut stats = CompactStats::default();
    for date in lake.click_dates()? {
        let files = lake.click_files(&date)?;
        let mut by_source: BTreeMap<Option<String>, Vec<(i64, i64, PathBuf)>> = BTreeMap::new();
        let mut others = Vec::new();
        for f in files {
            match f.file_name().and_then(|n| n.to_str()).and_then(parse_range) {
                Some((source, first, last)) => {
                    by_source.entry(source).or_default().push((first, last, f))
                }
                None => others.push(f),
            }
        }
        if by_source.values().all(|v| v.len() < 2) {
            continue;
        }
        progress(&date);
        let before: usize = by_source.values().map(Vec::len).sum::<usize>() + others.len();
        let staged = lake.staging().join(format!("compact-date={date}"));
        let _ = std::fs::remove_dir_all(&staged);
        std::fs::create_dir_all(&staged).map_err(io_err(&staged))?;
        let mut after = others.len();
        for f in &others {
            let to = staged.join(f.file_name().expect("file name"));
            std::fs::hard_link(f, &to).map_err(io_err(&to))?;
        }
        for (source, mut parts) in by_source {
            parts.sort();
            let first = parts.first().map(|p| p.0).unwrap_or_default();
            let last = parts.iter().map(|p| p.1).max().unwrap_or_default();
            let name = range_file_name(source.as_deref(), first, last);
            if parts.len() == 1 {
                let to = staged.join(&name);
                std::fs::hard_link(&parts[0].2, &to).map_err(io_err(&to))?;
                after += 1;
                continue;
            }
            let mut events = Vec::new();
            for (_, _, path) in &parts {
                events.extend(read_events(path)?);
            }
            stats.rows += events.len() as u64;
            let batches = sorted_batches(&events)?;
            write_parquet(
                &staged.join(&name),
                &batches,
                click_schema(),
                click_writer_properties(),
            )?;
            after += 1;
        }
        sync_dir(&staged)?;
        let live = lake.clicks_dir(&date);
        exchange(&staged, &live)?;
        sync_dir(&lake.clicks_root())?;
        // `staged` now holds the old files; readers can no longer see them.
        std::fs::remove_dir_all(&staged).map_err(io_err(&staged))?;
        // The day's files are new, so its rollups would read as stale:
        // rebuild them (same clicks, same numbers) so queries keep using them.
        crate::rebuild_daily(lake, &date)?;
        stats.days += 1;
        stats.files_before += before;
        stats.files_after += after;
    }
    Ok(stats)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> LakeResult<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).expect("path without NUL");
    let cb = CString::new(b.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: both arguments are valid NUL-terminated paths for the duration
    // of the call; renameat2 does not retain them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LakeError::Io {
            path: b.to_path_buf(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Without an atomic exchange, swap with two renames: a reader may briefly
/// see the day as empty, never duplicated.
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> LakeResult<()> {
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside).map_err(io_err(b))?;
    std::fs::rename(a, b).map_err(io_err(a))?;
    std::fs::rename(&aside, a).map_err(io_err(a))
}
