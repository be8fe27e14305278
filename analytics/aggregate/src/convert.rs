//! `snowlink-aggregate convert`: a lake of the layout before Delta tables
//! becomes three Delta tables, in place, once.
//!
//! The layout before: `clicks/date=D/clicks-[<stream>-]<first>-<last>.parquet`,
//! rollups in `daily/` and `dims/`, and a SQLite ledger
//! (`_ledger/ledger.db`) holding each stream's next position. A click file
//! counts when the ledger records it (its range begins below its stream's
//! position) or when its name has no stream (written before the ledger);
//! any other file was written by a run that died before recording it, and
//! is left out (it stays invisible; vacuum deletes it). One commit adds
//! every counted file to `clicks` with each stream's position as its
//! `txn`, so the converted lake resumes exactly where the old one stood.
//! The rollups are then rebuilt, and the ledger folder is renamed
//! `_ledger.before-delta`. Killed at any moment, convert can be run again.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use snowlink_lake::{Advance, Change, Lake, LakeError, Location, StagedFile, TableKind};

use crate::engine::LakeIo;

/// The app id of the conversion's own commit: present once converted.
const CONVERTED: &str = "snowlink/converted";

/// `(stream, first, last)` from an old click file name.
fn parse_old_name(name: &str) -> Option<(Option<String>, i64, i64)> {
    let stem = name.strip_prefix("clicks-")?.strip_suffix(".parquet")?;
    let mut parts: Vec<&str> = stem.rsplitn(3, '-').collect();
    parts.reverse();
    match parts.as_slice() {
        [first, last] => Some((None, first.parse().ok()?, last.parse().ok()?)),
        [stream, first, last] => Some((
            Some((*stream).to_owned()),
            first.parse().ok()?,
            last.parse().ok()?,
        )),
        _ => None,
    }
}

/// The old ledger's positions per stream, and its resend marks as the
/// `seen/<stream>/<origin>` app ids the engine reads.
type LedgerState = (HashMap<String, i64>, Vec<(String, i64)>);

fn ledger_state(root: &Path) -> anyhow::Result<LedgerState> {
    let path = root.join("_ledger").join("ledger.db");
    if !path.is_file() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))?;
    let mut stmt = conn
        .prepare("SELECT stream, next FROM streams")
        .with_context(|| format!("reading {}", path.display()))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let next = rows.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT stream, origin, max_seq FROM seen")?;
    let rows = stmt.query_map([], |r| {
        let (stream, origin): (String, String) = (r.get(0)?, r.get(1)?);
        Ok((format!("seen/{stream}/{origin}"), r.get(2)?))
    })?;
    Ok((next, rows.collect::<Result<_, _>>()?))
}

/// The counted click files of the old layout, with their rows.
fn counted_files(
    root: &Path,
    next: &HashMap<String, i64>,
) -> anyhow::Result<(Vec<StagedFile>, usize)> {
    let mut files = Vec::new();
    let mut left_out = 0;
    let clicks = root.join("clicks");
    let Ok(days) = std::fs::read_dir(&clicks) else {
        return Ok((files, 0));
    };
    let mut days: Vec<_> = days.filter_map(Result::ok).collect();
    days.sort_by_key(|d| d.file_name());
    for day in days {
        let folder = day.file_name().to_string_lossy().into_owned();
        let Some(date) = folder.strip_prefix("date=") else {
            continue;
        };
        let mut names: Vec<String> = std::fs::read_dir(day.path())?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let Some((stream, first, _)) = parse_old_name(&name) else {
                continue;
            };
            if let Some(stream) = &stream {
                match next.get(stream) {
                    Some(&n) if first < n => {}
                    Some(_) => {
                        left_out += 1;
                        continue;
                    }
                    None => bail!(
                        "{}/{name} belongs to stream {stream}, but the lake's ledger has no \
                         progress for it: refusing to convert (restore _ledger/ledger.db)",
                        day.path().display()
                    ),
                }
            }
            let path = day.path().join(&name);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata()?.len() as i64;
            let reader = parquet::file::reader::SerializedFileReader::new(file)
                .with_context(|| format!("reading {}", path.display()))?;
            let rows = parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows();
            files.push(StagedFile {
                date: date.to_owned(),
                path: format!("date={date}/{name}"),
                size,
                rows,
                stats: Some(format!("{{\"numRecords\":{rows}}}")),
            });
        }
    }
    Ok((files, left_out))
}

pub fn run(spec: &str) -> anyhow::Result<()> {
    let location = Location::parse(spec)?;
    let Location::Local(root) = &location else {
        bail!("the layout before Delta tables lived on a local folder only; give its path");
    };
    anyhow::ensure!(root.is_dir(), "the lake {} does not exist", root.display());
    let lake = Lake::at(location.clone())?;
    let runtime = std::sync::Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    );
    let io = LakeIo {
        lake: lake.clone(),
        runtime: runtime.clone(),
    };
    let started = std::time::Instant::now();
    let converted = runtime.block_on(async {
        match lake.load(TableKind::Clicks).await? {
            Some(t) => Ok::<_, LakeError>(
                snowlink_lake::recorded(&t, [CONVERTED])
                    .await?
                    .remove(CONVERTED)
                    .flatten()
                    .is_some(),
            ),
            None => Ok(false),
        }
    })?;
    let mut summary = (0usize, 0i64, 0usize);
    if !converted {
        let ledger = root.join("_ledger");
        let has_old = ledger.is_dir() || root.join("clicks").is_dir();
        if !has_old {
            bail!(
                "{} holds no lake of the layout before Delta tables (no _ledger, no clicks folder)",
                root.display()
            );
        }
        let (next, marks) = ledger_state(root)?;
        let (files, left_out) = counted_files(root, &next)?;
        let rows: i64 = files.iter().map(|f| f.rows).sum();
        let mut advances: Vec<Advance> = next
            .iter()
            .map(|(stream, &n)| Advance {
                app_id: stream.clone(),
                expected: None,
                next: n,
            })
            .collect();
        advances.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        advances.push(Advance {
            app_id: CONVERTED.into(),
            expected: None,
            next: 1,
        });
        runtime.block_on(async {
            let mut clicks = lake.table(TableKind::Clicks).await?;
            snowlink_lake::commit(&mut clicks, Change::Append(&files), &advances, &marks).await?;
            for kind in [TableKind::Daily, TableKind::Dims] {
                lake.table(kind).await?;
            }
            Ok::<_, LakeError>(())
        })?;
        summary = (files.len(), rows, left_out);
    }
    let rollups = crate::engine::refresh_rollups(&io)?;
    let ledger = root.join("_ledger");
    if ledger.is_dir() {
        std::fs::rename(&ledger, root.join("_ledger.before-delta"))
            .with_context(|| format!("renaming {}", ledger.display()))?;
    }
    for leftover in ["_staging", ".lock"] {
        let p = root.join(leftover);
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
    let (files, rows, left_out) = summary;
    if converted {
        println!(
            "{} was already converted; rollups of {rollups} days rebuilt",
            root.display()
        );
    } else {
        println!(
            "converted {}: {files} click files ({rows} clicks) committed to the clicks table, \
             {left_out} unrecorded files left out, rollups of {rollups} days rebuilt, in {:.2}s",
            root.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_names_parse() {
        assert_eq!(
            parse_old_name("clicks-00000000000000000001-00000000000000000042.parquet"),
            Some((None, 1, 42))
        );
        assert_eq!(
            parse_old_name("clicks-clicks.p3-00000000000000000010-00000000000000000020.parquet"),
            Some((Some("clicks.p3".into()), 10, 20))
        );
        assert_eq!(parse_old_name("daily.parquet"), None);
    }
}
