//! Daily rollups: `code, clicks, unique_visitors` per day, rebuilt from the
//! day's click files. Visitor ids rotate daily, so the distinct count of a day
//! is exact and days add up without double counting.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::write::write_atomically;
use crate::{io_err, Lake, LakeResult};

pub fn daily_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("clicks", DataType::Int64, false),
                Field::new("unique_visitors", DataType::Int64, false),
            ]))
        })
        .clone()
}

#[derive(Debug, Clone, Default)]
pub struct RollupStats {
    pub codes: usize,
    pub clicks: u64,
}

/// Reads the named string columns of every row of a Parquet file.
pub(crate) fn read_string_columns(
    path: &std::path::Path,
    columns: &[&str],
    mut each: impl FnMut(&[&StringArray]),
) -> LakeResult<()> {
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let arrays: Vec<&StringArray> = columns
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| {
                        arrow_schema::ArrowError::SchemaError(format!(
                            "{} has no string column {c}",
                            path.display()
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        each(&arrays);
    }
    Ok(())
}

/// Rebuilds `daily/date=<date>/daily.parquet` from the day's click files.
/// A day with no clicks left gets its rollup removed.
pub fn rebuild_daily(lake: &Lake, date: &str) -> LakeResult<RollupStats> {
    let mut per_code: HashMap<String, (i64, HashSet<String>)> = HashMap::new();
    for path in lake.click_files(date)? {
        read_string_columns(&path, &["code", "visitor_id"], |cols| {
            let (codes, visitors) = (cols[0], cols[1]);
            for i in 0..codes.len() {
                let entry = per_code.entry(codes.value(i).to_owned()).or_default();
                entry.0 += 1;
                if !visitors.is_null(i) {
                    entry.1.insert(visitors.value(i).to_owned());
                }
            }
        })?;
    }
    let out = lake.daily_dir(date).join("daily.parquet");
    if per_code.is_empty() {
        let _ = std::fs::remove_file(&out);
        return Ok(RollupStats::default());
    }
    let mut rows: Vec<_> = per_code.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut code = StringBuilder::new();
    let mut clicks = Int64Builder::new();
    let mut uniques = Int64Builder::new();
    let mut total = 0u64;
    for (c, (n, visitors)) in &rows {
        code.append_value(c);
        clicks.append_value(*n);
        uniques.append_value(visitors.len() as i64);
        total += *n as u64;
    }
    let batch = RecordBatch::try_new(
        daily_schema(),
        vec![
            Arc::new(code.finish()),
            Arc::new(clicks.finish()),
            Arc::new(uniques.finish()),
        ],
    )?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .build();
    write_atomically(lake, &out, &[batch], daily_schema(), props)?;
    Ok(RollupStats {
        codes: rows.len(),
        clicks: total,
    })
}
