//! Rollups of one day, rebuilt together from the day's click files whenever
//! the day changes:
//!
//! * `daily/date=D/daily.parquet`: `code, clicks, unique_visitors,
//!   nonbot_clicks, nonbot_visitors`;
//! * `dims/date=D/dims.parquet`: `code, dimension, value, clicks,
//!   unique_visitors, nonbot_clicks, nonbot_visitors` for each of the five
//!   dimensions (referrer host, country, browser, OS, device), `value` null
//!   where the click had none.
//!
//! `clicks` and `unique_visitors` count every click; `nonbot_clicks` and
//! `nonbot_visitors` the same without the clicks of known bots, each an
//! exact count of its own (a visitor seen both as a bot and not is counted
//! once in each), so a query reads whichever pair it needs.
//!
//! Visitor ids rotate daily, so the distinct count of a day is exact and days
//! add up without double counting. Both files are sorted by code, in small
//! row groups, so a question about one link reads a few of them per day.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::LakeResult;

/// The dimensions of the `dims` rollup: their names there, and the click
/// columns they come from.
pub const DIMENSIONS: [(&str, &str); 5] = [
    ("referrer", "referrer_host"),
    ("country", "country"),
    ("browser", "browser"),
    ("os", "os"),
    ("device", "device"),
];

/// Rows per row group of a rollup: small, so the code statistics of a row
/// group skip all but the few that hold one link.
const ROLLUP_ROW_GROUP: usize = 8 * 1024;

pub fn daily_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("clicks", DataType::Int64, false),
                Field::new("unique_visitors", DataType::Int64, false),
                Field::new("nonbot_clicks", DataType::Int64, false),
                Field::new("nonbot_visitors", DataType::Int64, false),
            ]))
        })
        .clone()
}

pub fn dims_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("dimension", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
                Field::new("clicks", DataType::Int64, false),
                Field::new("unique_visitors", DataType::Int64, false),
                Field::new("nonbot_clicks", DataType::Int64, false),
                Field::new("nonbot_visitors", DataType::Int64, false),
            ]))
        })
        .clone()
}

/// A visitor id as a number: the service writes 16 hex digits; anything
/// else is hashed (exact as long as distinct ids stay distinct, which a
/// 64-bit hash of one day's ids makes certain in practice).
pub fn visitor_key(id: &str) -> u64 {
    if id.len() <= 16 {
        if let Ok(v) = u64::from_str_radix(id, 16) {
            return v;
        }
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish() | (1 << 63)
}

#[derive(Debug, Clone, Default)]
pub struct RollupStats {
    pub codes: usize,
    pub clicks: u64,
}

/// The column of a click file that marks the clicks of known bots.
const BOT_COLUMN: &str = "is_bot";

/// Reads the named string columns and the bot flag of every row of a
/// Parquet file.
fn read_string_columns(
    file: bytes::Bytes,
    columns: &[&str],
    mut each: impl FnMut(&[&StringArray], &BooleanArray),
) -> LakeResult<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        columns.iter().copied().chain([BOT_COLUMN]),
    );
    // Large batches: each is counted on both cores at once.
    for batch in builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?
    {
        let batch = batch?;
        let arrays: Vec<&StringArray> = columns
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| {
                        arrow_schema::ArrowError::SchemaError(format!(
                            "a click file has no string column {c}"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let bots = batch
            .column_by_name(BOT_COLUMN)
            .and_then(|a| a.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| {
                arrow_schema::ArrowError::SchemaError(format!(
                    "a click file has no boolean column {BOT_COLUMN}"
                ))
            })?;
        each(&arrays, bots);
    }
    Ok(())
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// Clicks and distinct visitors, of everyone and without known bots. The
/// visitors of bot clicks are kept apart (a small set), so every visitor is
/// held once and both distinct counts are exact.
#[derive(Default)]
struct Tally {
    clicks: i64,
    nonbot_clicks: i64,
    /// Visitors of clicks that are not known bots'.
    nonbot: FastSet<u64>,
    /// Visitors of known bots' clicks.
    bots: FastSet<u64>,
}

impl Tally {
    fn add(&mut self, visitor: Option<u64>, bot: bool) {
        self.clicks += 1;
        if !bot {
            self.nonbot_clicks += 1;
        }
        if let Some(v) = visitor {
            if bot {
                self.bots.insert(v);
            } else {
                self.nonbot.insert(v);
            }
        }
    }

    /// clicks, unique visitors, clicks without bots, visitors without bots.
    fn counts(&self) -> [i64; 4] {
        let only_bots = self
            .bots
            .iter()
            .filter(|v| !self.nonbot.contains(v))
            .count();
        [
            self.clicks,
            (self.nonbot.len() + only_bots) as i64,
            self.nonbot_clicks,
            self.nonbot.len() as i64,
        ]
    }
}

/// The four count columns of a rollup, built together.
#[derive(Default)]
struct CountColumns([Int64Builder; 4]);

impl CountColumns {
    fn append(&mut self, counts: [i64; 4]) {
        for (column, n) in self.0.iter_mut().zip(counts) {
            column.append_value(n);
        }
    }

    fn finish(self) -> impl Iterator<Item = arrow_array::ArrayRef> {
        self.0
            .into_iter()
            .map(|mut c| Arc::new(c.finish()) as arrow_array::ArrayRef)
    }
}

/// Part of a day's counting: per code (when `per_code` is kept) and per
/// (code, dimension, value) for some of the dimensions. Codes and values are
/// interned, so a click costs lookups, not allocations. A day is counted by
/// two parts at once, one per core, each over the same clicks.
struct Part {
    dims: std::ops::Range<usize>,
    codes: FastMap<String, u32>,
    per_code: Option<Vec<Tally>>,
    /// Per dimension of the part, the values seen, by index.
    values: Vec<FastMap<String, u32>>,
    /// (code, dimension, value index or `NO_VALUE`) -> tally.
    per_value: FastMap<(u32, u8, u32), Tally>,
}

const NO_VALUE: u32 = u32::MAX;

fn intern(map: &mut FastMap<String, u32>, value: &str) -> u32 {
    if let Some(&i) = map.get(value) {
        return i;
    }
    let i = map.len() as u32;
    map.insert(value.to_owned(), i);
    i
}

/// Names by index, from an interning map.
fn names(map: &FastMap<String, u32>) -> Vec<&str> {
    let mut v = vec![""; map.len()];
    for (name, &i) in map {
        v[i as usize] = name;
    }
    v
}

impl Part {
    fn new(dims: std::ops::Range<usize>, per_code: bool) -> Self {
        Self {
            values: dims.clone().map(|_| FastMap::default()).collect(),
            dims,
            codes: FastMap::default(),
            per_code: per_code.then(Vec::new),
            per_value: FastMap::default(),
        }
    }

    /// Counts every row of `cols`: code, visitor id, then the five
    /// dimension columns in [`DIMENSIONS`] order; `bots` marks known bots.
    fn add(&mut self, cols: &[&StringArray], bots: &BooleanArray) {
        let mut last: Option<(&str, u32)> = None;
        for i in 0..cols[0].len() {
            let code = cols[0].value(i);
            // Click files are sorted by code: most rows repeat the last one.
            let c = match last {
                Some((name, c)) if name == code => c,
                _ => {
                    let c = intern(&mut self.codes, code);
                    last = Some((code, c));
                    c
                }
            };
            let visitor = cell(cols[1], i).map(visitor_key);
            let bot = bots.is_valid(i) && bots.value(i);
            if let Some(per_code) = &mut self.per_code {
                if c as usize == per_code.len() {
                    per_code.push(Tally::default());
                }
                per_code[c as usize].add(visitor, bot);
            }
            for d in self.dims.clone() {
                let v = match cell(cols[2 + d], i) {
                    Some(value) => intern(&mut self.values[d - self.dims.start], value),
                    None => NO_VALUE,
                };
                self.per_value
                    .entry((c, d as u8, v))
                    .or_default()
                    .add(visitor, bot);
            }
        }
    }
}

/// A whole day: its two parts.
struct Day {
    parts: [Part; 2],
}

impl Day {
    fn new() -> Self {
        // The per-code tally costs about as much as a dimension.
        Self {
            parts: [Part::new(0..2, true), Part::new(2..5, false)],
        }
    }

    fn is_empty(&self) -> bool {
        self.parts[0].codes.is_empty()
    }

    /// Counts a batch of rows, each part on its own thread.
    fn add(&mut self, cols: &[&StringArray], bots: &BooleanArray) {
        let [a, b] = &mut self.parts;
        std::thread::scope(|s| {
            s.spawn(|| b.add(cols, bots));
            a.add(cols, bots);
        });
    }

    fn batches(self) -> LakeResult<(RecordBatch, RecordBatch, RollupStats)> {
        let first = &self.parts[0];
        let code_names = names(&first.codes);
        let per_code = first
            .per_code
            .as_ref()
            .expect("the first part counts codes");
        let mut order: Vec<u32> = (0..code_names.len() as u32).collect();
        order.sort_by_key(|&i| code_names[i as usize]);
        let mut code = StringBuilder::new();
        let mut counts = CountColumns::default();
        let mut total = 0u64;
        for &i in &order {
            let t = &per_code[i as usize];
            code.append_value(code_names[i as usize]);
            counts.append(t.counts());
            total += t.clicks as u64;
        }
        let daily = RecordBatch::try_new(
            daily_schema(),
            std::iter::once(Arc::new(code.finish()) as arrow_array::ArrayRef)
                .chain(counts.finish())
                .collect(),
        )?;

        // (code, dimension, value, counts) of both parts,
        // by code, dimension name and value: sorted on ranks (numbers)
        // rather than on the strings.
        let mut dim_rank = [0u8; DIMENSIONS.len()];
        let mut by_name: Vec<usize> = (0..DIMENSIONS.len()).collect();
        by_name.sort_by_key(|&d| DIMENSIONS[d].0);
        for (rank, &d) in by_name.iter().enumerate() {
            dim_rank[d] = rank as u8;
        }
        /// Each name's place in the sorted order of all of them.
        fn ranks(names: &[&str]) -> Vec<u32> {
            let mut order: Vec<u32> = (0..names.len() as u32).collect();
            order.sort_unstable_by_key(|&i| names[i as usize]);
            let mut rank = vec![0; names.len()];
            for (r, &i) in order.iter().enumerate() {
                rank[i as usize] = r as u32;
            }
            rank
        }
        type Row<'a> = ((u32, u8, u32), &'a str, &'a str, Option<&'a str>, [i64; 4]);
        let mut rows: Vec<Row> = Vec::new();
        for part in &self.parts {
            let codes = names(&part.codes);
            let code_rank = ranks(&codes);
            let values: Vec<Vec<&str>> = part.values.iter().map(names).collect();
            let value_rank: Vec<Vec<u32>> = values.iter().map(|v| ranks(v)).collect();
            rows.extend(part.per_value.iter().map(|(&(c, d, v), t)| {
                let local = d as usize - part.dims.start;
                // No value sorts first.
                let (value, rank) = if v == NO_VALUE {
                    (None, 0)
                } else {
                    (
                        Some(values[local][v as usize]),
                        value_rank[local][v as usize] + 1,
                    )
                };
                (
                    (code_rank[c as usize], dim_rank[d as usize], rank),
                    codes[c as usize],
                    DIMENSIONS[d as usize].0,
                    value,
                    t.counts(),
                )
            }));
        }
        rows.sort_unstable_by_key(|r| r.0);
        let mut code = StringBuilder::new();
        let mut dimension = StringBuilder::new();
        let mut value = StringBuilder::new();
        let mut counts = CountColumns::default();
        for (_, c, d, v, n) in &rows {
            code.append_value(c);
            dimension.append_value(d);
            value.append_option(*v);
            counts.append(*n);
        }
        let dims = RecordBatch::try_new(
            dims_schema(),
            [
                Arc::new(code.finish()) as arrow_array::ArrayRef,
                Arc::new(dimension.finish()),
                Arc::new(value.finish()),
            ]
            .into_iter()
            .chain(counts.finish())
            .collect(),
        )?;
        let stats = RollupStats {
            codes: code_names.len(),
            clicks: total,
        };
        Ok((daily, dims, stats))
    }
}

fn cell(column: &StringArray, i: usize) -> Option<&str> {
    (!column.is_null(i)).then(|| column.value(i))
}

fn rollup_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROLLUP_ROW_GROUP))
        .build()
}

/// Counts a day's click files (each whole, in memory) into its two
/// rollups: `daily` and `dims`. `None` for a day without clicks.
pub fn count_day(
    files: Vec<bytes::Bytes>,
) -> LakeResult<Option<(RecordBatch, RecordBatch, RollupStats)>> {
    let mut day = Day::new();
    let mut columns = vec!["code", "visitor_id"];
    columns.extend(DIMENSIONS.iter().map(|(_, column)| *column));
    // One thread decodes the files while the batch before is counted (on
    // two threads): decoding is the part that does not split.
    std::thread::scope(|s| -> LakeResult<()> {
        type Columns = (Vec<StringArray>, BooleanArray);
        let (tx, rx) = std::sync::mpsc::sync_channel::<LakeResult<Columns>>(1);
        let columns = &columns;
        s.spawn(move || {
            for file in files {
                let read = read_string_columns(file, columns, |cols, bots| {
                    // A closed channel means the counting failed; the rest
                    // is read for nothing.
                    let cols = cols.iter().map(|c| (*c).clone()).collect();
                    let _ = tx.send(Ok((cols, bots.clone())));
                });
                if let Err(e) = read {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        });
        for batch in rx {
            let (strings, bots) = batch?;
            let cols: Vec<&StringArray> = strings.iter().collect();
            day.add(&cols, &bots);
        }
        Ok(())
    })?;
    if day.is_empty() {
        return Ok(None);
    }
    day.batches().map(Some)
}

/// A rollup file encoded: `daily` or `dims` of one day.
pub fn encode_rollup(batch: &RecordBatch) -> LakeResult<Vec<u8>> {
    crate::write::encode_parquet(std::slice::from_ref(batch), batch.schema(), rollup_props())
}

/// A rollup file's name: the number of clicks it was counted from, then a
/// unique part. A reader takes a day's rollup only when that number is the
/// day's clicks in the `clicks` table: late clicks make it stale until the
/// next rebuild.
pub fn rollup_file_name(table: &str, clicks: i64) -> String {
    format!(
        "{table}-c{clicks}-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )
}

/// The clicks a rollup file was counted from, from its name.
pub fn rollup_clicks(path: &str) -> Option<i64> {
    let name = path.rsplit('/').next()?;
    let rest = name.split_once("-c")?.1;
    rest.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::Int64Array;
    use snowlink_events::ClickEvent;

    use super::*;
    use crate::{encode_clicks, sorted_batches};

    fn click(
        i: i64,
        code: &str,
        referrer: Option<&str>,
        country: Option<&str>,
        visitor: &str,
    ) -> ClickEvent {
        ClickEvent {
            schema_version: 1,
            event_id: i,
            code: code.into(),
            ts: 1_795_132_800_000 + i,
            referrer: None,
            referrer_host: referrer.map(Into::into),
            user_agent: None,
            browser: Some("Firefox".into()),
            os: None,
            device: Some("desktop".into()),
            is_bot: false,
            country: country.map(Into::into),
            visitor_id: visitor.into(),
        }
    }

    fn file(events: &[ClickEvent]) -> bytes::Bytes {
        encode_clicks(&sorted_batches(events).unwrap())
            .unwrap()
            .bytes
            .into()
    }

    /// The rows of a dims batch as (code, dimension, value) -> (clicks, uniques).
    fn dims_rows(b: &RecordBatch) -> BTreeMap<(String, String, Option<String>), (i64, i64)> {
        let s = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().unwrap();
        let n = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
        let (code, dim, value, clicks, uniques) = (s(0), s(1), s(2), n(3), n(4));
        let mut out = BTreeMap::new();
        let mut previous: Option<(String, String)> = None;
        for i in 0..b.num_rows() {
            let key = (code.value(i).to_owned(), dim.value(i).to_owned());
            // Sorted by code, then dimension.
            assert!(previous.as_ref().is_none_or(|p| *p <= key));
            previous = Some(key.clone());
            let value = (!value.is_null(i)).then(|| value.value(i).to_owned());
            out.insert((key.0, key.1, value), (clicks.value(i), uniques.value(i)));
        }
        out
    }

    #[test]
    fn dims_count_clicks_and_distinct_visitors_per_value_across_files() {
        // Two files of the same day: counts span both.
        let first = vec![
            click(1, "a", Some("x.com"), Some("DE"), "v1"),
            click(2, "a", Some("x.com"), Some("DE"), "v1"),
            click(3, "a", None, None, "v2"),
        ];
        let second = vec![
            click(4, "a", Some("x.com"), Some("FR"), "v3"),
            click(5, "b", Some(""), Some("DE"), "v1"),
        ];
        let (_daily, dims, stats) = count_day(vec![file(&first), file(&second)])
            .unwrap()
            .unwrap();
        assert_eq!((stats.codes, stats.clicks), (2, 5));
        let dims = dims_rows(&dims);
        let get = |code: &str, dim: &str, value: Option<&str>| {
            dims.get(&(code.into(), dim.into(), value.map(Into::into)))
                .copied()
        };
        assert_eq!(get("a", "referrer", Some("x.com")), Some((3, 2)));
        // No value is its own row, kept apart from an empty one.
        assert_eq!(get("a", "referrer", None), Some((1, 1)));
        assert_eq!(get("b", "referrer", Some("")), Some((1, 1)));
        assert_eq!(get("a", "country", Some("DE")), Some((2, 1)));
        assert_eq!(get("a", "country", Some("FR")), Some((1, 1)));
        assert_eq!(get("a", "os", None), Some((4, 3)));
        // Every dimension of a code adds up to its clicks.
        for (name, _) in DIMENSIONS {
            let total: i64 = dims
                .iter()
                .filter(|((c, d, _), _)| c == "a" && d == name)
                .map(|(_, (n, _))| n)
                .sum();
            assert_eq!(total, 4, "{name}");
        }
        assert!(count_day(vec![]).unwrap().is_none());
    }

    #[test]
    fn counts_without_bots_are_exact_even_for_a_visitor_seen_as_both() {
        let mut bot = click(3, "a", None, Some("DE"), "b1");
        bot.is_bot = true;
        let mut bot_again = click(4, "a", None, Some("DE"), "b1");
        bot_again.is_bot = true;
        // v1 also clicks once with a bot's user agent.
        let mut v1_as_bot = click(5, "a", None, Some("FR"), "v1");
        v1_as_bot.is_bot = true;
        let clicks = vec![
            click(1, "a", None, Some("DE"), "v1"),
            click(2, "a", None, Some("FR"), "v2"),
            bot,
            bot_again,
            v1_as_bot,
        ];
        let (daily, dims, _) = count_day(vec![file(&clicks)]).unwrap().unwrap();
        let n = |b: &RecordBatch, name: &str| {
            let c = b.column_by_name(name).unwrap();
            c.as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        // clicks, unique visitors, and the same without bots, of a row.
        let counts = |b: &RecordBatch, row: usize| -> Vec<i64> {
            [
                "clicks",
                "unique_visitors",
                "nonbot_clicks",
                "nonbot_visitors",
            ]
            .iter()
            .map(|c| n(b, c)[row])
            .collect()
        };
        assert_eq!(counts(&daily, 0), [5, 3, 2, 2]);
        let country = dims
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let value = dims
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let row = |v: &str| {
            (0..dims.num_rows())
                .find(|&i| country.value(i) == "country" && value.value(i) == v)
                .unwrap()
        };
        // DE: one person, one bot who clicked twice.
        assert_eq!(counts(&dims, row("DE")), [3, 2, 1, 1]);
        // FR: one person, and v1 as a bot.
        let fr_counts = counts(&dims, row("FR"));
        assert_eq!(fr_counts, [2, 2, 1, 1]);
    }

    #[test]
    fn rollup_names_carry_their_clicks() {
        let n = rollup_file_name("daily", 1234);
        assert_eq!(rollup_clicks(&n), Some(1234));
        assert_eq!(rollup_clicks(&format!("date=2026-01-01/{n}")), Some(1234));
        assert_eq!(rollup_clicks("daily.parquet"), None);
    }
}
