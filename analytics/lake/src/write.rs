//! The one Parquet writer for click events.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use snowlink_events::arrow::{click_schema, to_record_batch_of};
use snowlink_events::EventView;

use crate::LakeResult;

/// Rows per row group: big enough for fast scans, small enough that the
/// `code` statistics of a sorted file let a one-link query skip most groups.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Column indexes of the sort key in [`click_schema`].
const CODE_COL: i32 = 2;
const TS_COL: i32 = 3;

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

/// Encodes `batches` as one Parquet file in memory.
pub(crate) fn encode_parquet(
    batches: &[RecordBatch],
    schema: arrow_schema::SchemaRef,
    props: WriterProperties,
) -> LakeResult<Vec<u8>> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// Sorts events by `(code, ts, event_id)`, the lake's order, and cuts them
/// into row-group-sized batches: what [`write_sorted_clicks`] takes.
pub fn sorted_batches<E: EventView>(events: &[E]) -> LakeResult<Vec<RecordBatch>> {
    // Sorted as numbers, not strings, and by index, not by moving the
    // events: each code becomes its rank among the batch's distinct codes.
    let mut ids: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    let id_of: Vec<u32> = events
        .iter()
        .map(|e| {
            let next = ids.len() as u32;
            *ids.entry(e.view().code).or_insert(next)
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
        .map(|(i, e)| {
            let e = e.view();
            (rank[id_of[i] as usize], e.ts, e.event_id, i as u32)
        })
        .collect();
    order.sort_unstable();
    Ok(order
        .chunks(ROW_GROUP_ROWS)
        .map(|chunk| to_record_batch_of(chunk.iter().map(|&(.., i)| events[i as usize].view())))
        .collect::<Result<Vec<_>, _>>()?)
}

/// A click file encoded and described, ready to upload: its bytes, rows
/// and Delta statistics (`numRecords`, and the least and greatest `code`
/// and `ts`, which let a reader skip files that cannot hold a link or a
/// time).
pub struct EncodedClicks {
    pub bytes: Vec<u8>,
    pub rows: i64,
    pub stats: String,
}

/// Encodes batches made by [`sorted_batches`] (sorted by code, then time).
pub fn encode_clicks(batches: &[RecordBatch]) -> LakeResult<EncodedClicks> {
    let bytes = encode_parquet(batches, click_schema(), click_writer_properties())?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    Ok(EncodedClicks {
        bytes,
        rows: rows as i64,
        stats: click_stats(batches, rows),
    })
}

fn click_stats(batches: &[RecordBatch], rows: usize) -> String {
    use arrow_array::{Array, StringArray, TimestampMillisecondArray};
    let strings = |b: &RecordBatch| {
        b.column(CODE_COL as usize)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
    };
    let first_code = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(strings)
        .map(|a| a.value(0).to_owned());
    let last_code = batches
        .iter()
        .rev()
        .find(|b| b.num_rows() > 0)
        .and_then(strings)
        .map(|a| a.value(a.len() - 1).to_owned());
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for b in batches {
        if let Some(ts) = b
            .column(TS_COL as usize)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
        {
            for v in ts.values().iter() {
                lo = lo.min(*v);
                hi = hi.max(*v);
            }
        }
    }
    let mut stats = serde_json::json!({ "numRecords": rows });
    if let (Some(a), Some(z)) = (first_code, last_code) {
        if lo <= hi {
            let iso = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap_or_default()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()
            };
            stats["minValues"] = serde_json::json!({ "code": a, "ts": iso(lo) });
            stats["maxValues"] = serde_json::json!({ "code": z, "ts": iso(hi) });
            stats["nullCount"] = serde_json::json!({ "code": 0, "ts": 0 });
        }
    }
    stats.to_string()
}

/// The name of a click file: the stream and range it holds, then a unique
/// part, so no two writers ever write the same object.
pub fn click_file_name(stream: &str, first: i64, last: i64) -> String {
    format!(
        "clicks-{stream}-{first:020}-{last:020}-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )
}
