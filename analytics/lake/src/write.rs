//! The one Parquet writer for click events.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use snowlink_events::arrow::{click_schema, to_record_batch_of};
use snowlink_events::ClickEvent;

use crate::layout::sync_dir;
use crate::{io_err, range_file_name, Lake, LakeResult};

/// Rows per row group: big enough for fast scans, small enough that the
/// `code` statistics of a sorted file let a one-link query skip most groups.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Column indexes of the sort key in [`click_schema`].
const CODE_COL: i32 = 2;
const TS_COL: i32 = 3;

#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

pub(crate) fn click_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: CODE_COL,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: TS_COL,
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_column_bloom_filter_enabled(ColumnPath::from("code"), true)
        .build()
}

/// Writes `batches` to `final_path` through a staging file: write, fsync,
/// rename, fsync the folder. Returns the file's size.
pub(crate) fn write_atomically(
    lake: &Lake,
    final_path: &Path,
    batches: &[RecordBatch],
    schema: arrow_schema::SchemaRef,
    props: WriterProperties,
) -> LakeResult<u64> {
    let dir = final_path.parent().expect("lake files live in a folder");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let staging = lake.staging();
    std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    let tmp = staging.join(format!(
        "{}.{}.tmp",
        final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file"),
        std::process::id()
    ));
    let bytes = write_parquet(&tmp, batches, schema, props)?;
    std::fs::rename(&tmp, final_path).map_err(io_err(final_path))?;
    sync_dir(dir)?;
    Ok(bytes)
}

/// Writes `batches` to a new file at `path` and fsyncs it; returns its size.
pub(crate) fn write_parquet(
    path: &Path,
    batches: &[RecordBatch],
    schema: arrow_schema::SchemaRef,
    props: WriterProperties,
) -> LakeResult<u64> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    for batch in batches {
        writer.write(batch)?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(io_err(path))?;
    Ok(file.metadata().map_err(io_err(path))?.len())
}

/// Sorts events by `(code, ts, event_id)`, the lake's order, and cuts them
/// into row-group-sized batches: what [`write_sorted_clicks`] takes.
pub fn sorted_batches(events: &[ClickEvent]) -> LakeResult<Vec<RecordBatch>> {
    // Sorted as numbers, not strings, and by index, not by moving the
    // events: each code becomes its rank among the batch's distinct codes.
    let mut ids: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    let id_of: Vec<u32> = events
        .iter()
        .map(|e| {
            let next = ids.len() as u32;
            *ids.entry(e.code.as_str()).or_insert(next)
        })
        .collect();
    let mut codes: Vec<(&str, u32)> = ids.iter().map(|(c, &i)| (*c, i)).collect();
    codes.sort_unstable();
    let mut rank = vec![0u32; codes.len()];
    for (r, (_, first_seen)) in codes.iter().enumerate() {
        rank[*first_seen as usize] = r as u32;
    }
    let mut order: Vec<(u32, i64, i64, u32)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (rank[id_of[i] as usize], e.ts, e.event_id, i as u32))
        .collect();
    order.sort_unstable();
    Ok(order
        .chunks(ROW_GROUP_ROWS)
        .map(|chunk| to_record_batch_of(chunk.iter().map(|&(.., i)| &events[i as usize])))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Writes one day's events from the source range `first..=last` to
/// `clicks/date=<date>/clicks-[<source>-]<first>-<last>.parquet`, sorted by
/// `(code, ts, event_id)`. Writing the same range again yields the same name
/// and the same content, replacing the file.
pub fn write_clicks(
    lake: &Lake,
    date: &str,
    source: Option<&str>,
    first: i64,
    last: i64,
    events: &[ClickEvent],
) -> LakeResult<WrittenFile> {
    let batches = sorted_batches(events)?;
    write_sorted_clicks(lake, date, source, first, last, &batches)
}

/// [`write_clicks`] for events already made into batches by
/// [`sorted_batches`] (on another thread, say).
pub fn write_sorted_clicks(
    lake: &Lake,
    date: &str,
    source: Option<&str>,
    first: i64,
    last: i64,
    batches: &[RecordBatch],
) -> LakeResult<WrittenFile> {
    let path = lake
        .clicks_dir(date)
        .join(range_file_name(source, first, last));
    let bytes = write_atomically(
        lake,
        &path,
        batches,
        click_schema(),
        click_writer_properties(),
    )?;
    Ok(WrittenFile {
        path,
        rows: batches.iter().map(|b| b.num_rows()).sum(),
        bytes,
    })
}
