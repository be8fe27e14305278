//! What keeps a lake fast: rollups of complete days, compaction
//! (optimize) and vacuum. Each change is one Delta commit, safe while
//! workers append.

use std::collections::BTreeMap;

use deltalake_core::DeltaTable;
use futures::{StreamExt, TryStreamExt};

use crate::table::{commit, files_by_date, recorded, Advance, Change, LiveFile, TableKind};
use crate::{
    count_day, encode_clicks, encode_rollup, rollup_clicks, rollup_file_name, sorted_batches, Lake,
    LakeError, LakeResult, RollupStats,
};

/// Parallel reads of one day's files.
const READS_AT_ONCE: usize = 8;

/// What the tables hold for one date.
#[derive(Debug, Clone, Default)]
pub struct DayState {
    /// Clicks in the `clicks` table, from the files' statistics.
    pub clicks: i64,
    pub click_files: Vec<LiveFile>,
    pub daily_files: Vec<LiveFile>,
    pub dims_files: Vec<LiveFile>,
}

impl DayState {
    /// True when the rollup of `kind` (daily or dims) was counted from
    /// exactly the day's clicks as they are now.
    pub fn rollup_fresh(&self, kind: TableKind) -> bool {
        let files = match kind {
            TableKind::Daily => &self.daily_files,
            TableKind::Dims => &self.dims_files,
            TableKind::Clicks => return false,
        };
        !files.is_empty()
            && files
                .iter()
                .all(|f| rollup_clicks(&f.path) == Some(self.clicks))
    }
}

/// Per date, what each table holds. `daily` and `dims` may be missing.
pub fn day_states(
    clicks: &DeltaTable,
    daily: Option<&DeltaTable>,
    dims: Option<&DeltaTable>,
) -> LakeResult<BTreeMap<String, DayState>> {
    let mut days: BTreeMap<String, DayState> = BTreeMap::new();
    for (date, files) in files_by_date(clicks)? {
        let d = days.entry(date).or_default();
        d.clicks = files.iter().map(|f| f.rows.unwrap_or(0)).sum();
        d.click_files = files;
    }
    for (table, daily) in [(daily, true), (dims, false)] {
        let Some(table) = table else { continue };
        for (date, files) in files_by_date(table)? {
            // A rollup of a day without clicks is dropped at its rebuild.
            let d = days.entry(date).or_default();
            if daily {
                d.daily_files = files;
            } else {
                d.dims_files = files;
            }
        }
    }
    Ok(days)
}

/// Every click event of the `clicks` table at its latest version (none
/// for a lake without one), in file order. For checks and small lakes: it
/// holds all of them in memory.
pub async fn read_all_clicks(lake: &Lake) -> LakeResult<Vec<snowlink_events::ClickEvent>> {
    let Some(table) = lake.load(TableKind::Clicks).await? else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    for files in files_by_date(&table)?.values() {
        for bytes in read_all(lake, TableKind::Clicks, files).await? {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?
                    .build()?;
            for batch in reader {
                events.extend(snowlink_events::arrow::from_record_batch(&batch?)?);
            }
        }
    }
    Ok(events)
}

/// Reads every file of a list, a few at once, in order.
async fn read_all(
    lake: &Lake,
    kind: TableKind,
    files: &[LiveFile],
) -> LakeResult<Vec<bytes::Bytes>> {
    futures::stream::iter(files.iter().map(|f| lake.read(kind, &f.path)))
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await
}

/// The rollup app id of a date: recorded with the clicks it was counted from.
fn rollup_app_id(date: &str) -> String {
    format!("rollup/{date}")
}

/// Rebuilds the `daily` and `dims` rollups of every day before `open_from`
/// (a `YYYY-MM-DD`: that day and later are still open and are read from
/// `clicks`) whose rollups are missing or were counted from fewer clicks
/// than the day holds now (late clicks). Each table's rebuild of a day is
/// one commit that replaces that date's partition. A day another worker
/// rebuilt meanwhile is left to it. Returns what was rebuilt.
pub async fn refresh_rollups(
    lake: &Lake,
    clicks: &mut DeltaTable,
    daily: &mut DeltaTable,
    dims: &mut DeltaTable,
    open_from: &str,
) -> LakeResult<Vec<(String, RollupStats)>> {
    clicks.update_incremental(None).await?;
    daily.update_incremental(None).await?;
    dims.update_incremental(None).await?;
    let days = day_states(clicks, Some(daily), Some(dims))?;
    let mut rebuilt = Vec::new();
    for (date, day) in days {
        if date.as_str() >= open_from
            || (day.rollup_fresh(TableKind::Daily) && day.rollup_fresh(TableKind::Dims))
        {
            continue;
        }
        match rebuild_day(lake, &date, &day, daily, dims).await {
            Ok(stats) => rebuilt.push((date, stats)),
            Err(LakeError::Conflict(why)) => {
                tracing::info!(date, why, "another worker rebuilt this day's rollups");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(rebuilt)
}

/// Rebuilds one day's rollups from its click files.
pub async fn rebuild_day(
    lake: &Lake,
    date: &str,
    day: &DayState,
    daily: &mut DeltaTable,
    dims: &mut DeltaTable,
) -> LakeResult<RollupStats> {
    let files = read_all(lake, TableKind::Clicks, &day.click_files).await?;
    let counted = tokio::task::spawn_blocking(move || count_day(files))
        .await
        .map_err(|e| LakeError::Task(e.to_string()))??;
    let app_id = rollup_app_id(date);
    let mut stats = RollupStats::default();
    for (kind, table) in [
        (TableKind::Dims, &mut *dims),
        (TableKind::Daily, &mut *daily),
    ] {
        let mut add = Vec::new();
        if let Some((daily_batch, dims_batch, s)) = &counted {
            let batch = if kind == TableKind::Daily {
                daily_batch
            } else {
                dims_batch
            };
            let bytes = encode_rollup(batch)?;
            let name = rollup_file_name(kind.name(), day.clicks);
            add.push(
                lake.upload(kind, date, &name, bytes, batch.num_rows() as i64, None)
                    .await?,
            );
            stats = s.clone();
        }
        // The files to replace and the recorded count, read from one
        // version of the table: the table moves on with this refresh's own
        // commits of earlier days, which may bring another worker's
        // rollup of this one; its files are then replaced, never kept
        // beside ours.
        let old = files_by_date(table)?.remove(date).unwrap_or_default();
        let expected = recorded(table, [app_id.as_str()])
            .await?
            .remove(&app_id)
            .flatten();
        commit(
            table,
            Change::ReplaceDate {
                date,
                remove: &old,
                add: &add,
            },
            &[Advance {
                app_id: app_id.clone(),
                expected,
                next: day.clicks,
            }],
            &[],
        )
        .await?;
    }
    tracing::info!(
        date,
        codes = stats.codes,
        clicks = stats.clicks,
        "rollups rebuilt"
    );
    Ok(stats)
}

/// What a compaction did.
#[derive(Debug, Clone, Default)]
pub struct CompactStats {
    pub days: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: u64,
}

/// Compaction as a Delta optimize: every day with more than one click
/// file gets one file sorted by code and time, in one commit per day that
/// removes the old files and adds the new one without changing data
/// (`dataChange: false`), so appends running meanwhile never conflict with
/// it. Rows are read back and counted before the commit; a mismatch stops
/// it. Rollups stay fresh: the day's clicks are the same.
pub async fn compact(
    lake: &Lake,
    clicks: &mut DeltaTable,
    mut progress: impl FnMut(&str),
) -> LakeResult<CompactStats> {
    use snowlink_events::arrow::from_record_batch;
    clicks.update_incremental(None).await?;
    let mut stats = CompactStats::default();
    for (date, files) in files_by_date(clicks)? {
        if files.len() < 2 {
            continue;
        }
        progress(&date);
        let bytes = read_all(lake, TableKind::Clicks, &files).await?;
        let expected: i64 = files.iter().map(|f| f.rows.unwrap_or(0)).sum();
        let encoded = tokio::task::spawn_blocking(move || -> LakeResult<_> {
            let mut events = Vec::new();
            for b in bytes {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(b)?
                        .build()?;
                for batch in reader {
                    events.extend(from_record_batch(&batch?)?);
                }
            }
            encode_clicks(&sorted_batches(&events)?)
        })
        .await
        .map_err(|e| LakeError::Task(e.to_string()))??;
        if encoded.rows != expected {
            return Err(LakeError::Conflict(format!(
                "compacting {date}: read {} rows where the table records {expected}",
                encoded.rows
            )));
        }
        let name = format!("clicks-compacted-{}.parquet", uuid::Uuid::new_v4().simple());
        let rows = encoded.rows;
        let staged = lake
            .upload(
                TableKind::Clicks,
                &date,
                &name,
                encoded.bytes,
                rows,
                Some(encoded.stats),
            )
            .await?;
        commit(
            clicks,
            Change::Rewrite {
                date: &date,
                remove: &files,
                add: std::slice::from_ref(&staged),
            },
            &[],
            &[],
        )
        .await?;
        stats.days += 1;
        stats.files_before += files.len();
        stats.files_after += 1;
        stats.rows += rows as u64;
    }
    Ok(stats)
}

/// Deletes, in every table, the files no current version references and
/// older than `retain`: those a compaction or rollup replaced, and those
/// a killed worker uploaded but never committed. Returns how many.
pub async fn vacuum(lake: &Lake, retain: std::time::Duration) -> LakeResult<usize> {
    use deltalake_core::operations::vacuum::VacuumMode;
    let mut deleted = 0;
    for kind in TableKind::ALL {
        let Some(table) = lake.load(kind).await? else {
            continue;
        };
        let retention = chrono::Duration::from_std(retain)
            .map_err(|e| LakeError::Location(format!("--retain: {e}")))?;
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await?;
        deleted += metrics.files_deleted.len();
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use snowlink_events::ClickEvent;

    use super::*;
    use crate::{click_file_name, encode_clicks, sorted_batches, Advance, Change, TableKind};

    /// `n` clicks of link `a` on the day starting at `day_ms`.
    fn clicks(day_ms: i64, n: i64) -> Vec<ClickEvent> {
        (0..n)
            .map(|i| ClickEvent {
                schema_version: 1,
                event_id: day_ms / 1000 + i + 1,
                code: "a".into(),
                ts: day_ms + i,
                referrer: None,
                referrer_host: None,
                user_agent: None,
                browser: None,
                os: None,
                device: Some("desktop".into()),
                is_bot: false,
                country: None,
                visitor_id: format!("{i:x}"),
            })
            .collect()
    }

    /// A worker that ran `day_states`, then, before rebuilding a day, saw
    /// its table move on (its own commit of an earlier day) to a version
    /// where another worker had already rolled that day up, replaces the
    /// other's rollup: one rollup of the day, never two.
    #[tokio::test]
    async fn a_rollup_another_worker_committed_meanwhile_is_replaced_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let mut table = lake.table(TableKind::Clicks).await.unwrap();
        let day_ms = 1_795_132_800_000;
        let events = clicks(day_ms, 50);
        let encoded = encode_clicks(&sorted_batches(&events).unwrap()).unwrap();
        let date = snowlink_events::date_of_ms(day_ms);
        let file = lake
            .upload(
                TableKind::Clicks,
                &date,
                &click_file_name("s", 1, 50),
                encoded.bytes,
                encoded.rows,
                Some(encoded.stats),
            )
            .await
            .unwrap();
        let advance = Advance {
            app_id: "s".into(),
            expected: None,
            next: 51,
        };
        commit(&mut table, Change::Append(&[file]), &[advance], &[])
            .await
            .unwrap();
        // The late worker's view, before anyone rolled the day up.
        let clicks_b = lake.table(TableKind::Clicks).await.unwrap();
        let mut daily_b = lake.table(TableKind::Daily).await.unwrap();
        let mut dims_b = lake.table(TableKind::Dims).await.unwrap();
        let days = day_states(&clicks_b, Some(&daily_b), Some(&dims_b)).unwrap();
        assert!(days[&date].daily_files.is_empty());
        // Another worker rolls it up.
        let (mut c, mut d, mut m) = (
            lake.table(TableKind::Clicks).await.unwrap(),
            lake.table(TableKind::Daily).await.unwrap(),
            lake.table(TableKind::Dims).await.unwrap(),
        );
        let done = refresh_rollups(&lake, &mut c, &mut d, &mut m, "9999-12-31")
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        // The late worker's tables move on, its view of the day does not.
        daily_b.update_incremental(None).await.unwrap();
        dims_b.update_incremental(None).await.unwrap();
        rebuild_day(&lake, &date, &days[&date], &mut daily_b, &mut dims_b)
            .await
            .unwrap();
        let daily = lake.load(TableKind::Daily).await.unwrap().unwrap();
        let dims = lake.load(TableKind::Dims).await.unwrap().unwrap();
        let now = day_states(&c, Some(&daily), Some(&dims)).unwrap();
        assert_eq!(
            now[&date].daily_files.len(),
            1,
            "one daily rollup of the day"
        );
        assert_eq!(now[&date].dims_files.len(), 1, "one dims rollup of the day");
    }
}
