//! One link's statistics as one document: totals, a gap-filled time series
//! and five breakdowns. It is what `GET /api/v1/links/{code}/stats` of the
//! service answers, so the CLI and the HTTP API give the same numbers.
//!
//! The link's rows are read once (one scan, the code and time bounds pushed
//! down to the Parquet reader) and counted here, exactly: unique visitors
//! are distinct `visitor_id`s, never estimates.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Maps and sets of the counting: per click lookups, so a fast hasher
/// (inputs are the lake's values, and the process is short-lived).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::commands::{gap_fill, query, quoted_code, step_ms, Bounds};
use crate::model::{Bucket, Range};

/// Values listed per breakdown before the rest is folded into `(other)`.
pub const TOP_VALUES: usize = 10;
/// The value of clicks without one (no referrer, unknown country).
pub const NONE: &str = "(none)";
/// The row holding every value past the top ones.
pub const OTHER: &str = "(other)";

/// The five breakdowns, as the document names them, with their columns.
pub const DIMENSIONS: [(&str, &str); 5] = [
    ("referrers", "referrer_host"),
    ("countries", "country"),
    ("browsers", "browser"),
    ("os", "os"),
    ("devices", "device"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Start of the bucket, RFC 3339, UTC.
    pub bucket: String,
    pub clicks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    pub value: String,
    pub clicks: u64,
    pub unique_visitors: u64,
}

/// The statistics document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    pub code: String,
    /// The bounds asked for, RFC 3339; `null` when open.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Clicks counted (bots excluded unless asked for).
    pub clicks: u64,
    pub unique_visitors: u64,
    /// Clicks of known bots in the range, counted or not.
    pub bot_clicks: u64,
    pub series: Vec<Point>,
    pub referrers: Vec<Share>,
    pub countries: Vec<Share>,
    pub browsers: Vec<Share>,
    pub os: Vec<Share>,
    pub devices: Vec<Share>,
}

/// One click as the counting needs it, borrowed from the batch it is in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row<'a> {
    pub ts: i64,
    pub is_bot: bool,
    pub visitor: u64,
    /// Referrer host, country, browser, OS, device, in [`DIMENSIONS`] order.
    pub values: [Option<&'a str>; 5],
}

pub use snowlink_lake::visitor_key;

/// Counts rows into the document. Pure: tested without a lake.
#[derive(Default)]
pub struct Counter {
    include_bots: bool,
    clicks: u64,
    bot_clicks: u64,
    visitors: FastSet<u64>,
    buckets: BTreeMap<i64, i64>,
    /// Per dimension: value -> (clicks, visitors).
    shares: [FastMap<String, (u64, FastSet<u64>)>; 5],
}

impl Counter {
    pub fn new(include_bots: bool) -> Self {
        Self {
            include_bots,
            ..Self::default()
        }
    }

    /// Adds what `other` counted (over other rows) to this one.
    pub fn merge(&mut self, other: Counter) {
        self.clicks += other.clicks;
        self.bot_clicks += other.bot_clicks;
        self.visitors.extend(other.visitors);
        for (bucket, n) in other.buckets {
            *self.buckets.entry(bucket).or_insert(0) += n;
        }
        for (mine, theirs) in self.shares.iter_mut().zip(other.shares) {
            for (value, (clicks, visitors)) in theirs {
                let entry = mine.entry(value).or_default();
                entry.0 += clicks;
                entry.1.extend(visitors);
            }
        }
    }

    pub fn add(&mut self, row: Row<'_>, step: i64) {
        if row.is_bot {
            self.bot_clicks += 1;
            if !self.include_bots {
                return;
            }
        }
        self.clicks += 1;
        *self
            .buckets
            .entry(row.ts.div_euclid(step) * step)
            .or_insert(0) += 1;
        for (i, value) in row.values.into_iter().enumerate() {
            let value = value.filter(|v| !v.is_empty()).unwrap_or(NONE);
            let entry = match self.shares[i].get_mut(value) {
                Some(e) => e,
                None => self.shares[i].entry(value.to_owned()).or_default(),
            };
            entry.0 += 1;
            entry.1.insert(row.visitor);
        }
        self.visitors.insert(row.visitor);
    }

    /// The top values by clicks (ties by value), then `(other)` with the
    /// clicks and distinct visitors of all the rest: every breakdown adds up
    /// to `clicks`.
    fn breakdown(map: FastMap<String, (u64, FastSet<u64>)>) -> Vec<Share> {
        let mut all: Vec<(String, (u64, FastSet<u64>))> = map.into_iter().collect();
        all.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
        let rest = if all.len() > TOP_VALUES {
            all.split_off(TOP_VALUES)
        } else {
            Vec::new()
        };
        let mut out: Vec<Share> = all
            .into_iter()
            .map(|(value, (clicks, visitors))| Share {
                value,
                clicks,
                unique_visitors: visitors.len() as u64,
            })
            .collect();
        if !rest.is_empty() {
            let mut clicks = 0;
            let mut visitors: FastSet<u64> = FastSet::default();
            for (_, (c, v)) in rest {
                clicks += c;
                visitors.extend(v);
            }
            out.push(Share {
                value: OTHER.to_owned(),
                clicks,
                unique_visitors: visitors.len() as u64,
            });
        }
        out
    }

    pub(crate) fn finish(
        self,
        code: &str,
        bounds: &Bounds,
        by: Bucket,
        now: DateTime<Utc>,
    ) -> Result<LinkStats> {
        let (times, values) = gap_fill(&self.buckets, bounds, by, now)?;
        let rfc = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        let series = times
            .into_iter()
            .zip(values)
            .map(|(t, c)| Point {
                bucket: rfc(t),
                clicks: c as u64,
            })
            .collect();
        let [referrers, countries, browsers, os, devices] = self.shares.map(Self::breakdown);
        Ok(LinkStats {
            code: code.to_owned(),
            since: bounds.since.map(|t| rfc(t.timestamp_millis())),
            until: bounds.until.map(|t| rfc(t.timestamp_millis())),
            clicks: self.clicks,
            unique_visitors: self.visitors.len() as u64,
            bot_clicks: self.bot_clicks,
            series,
            referrers,
            countries,
            browsers,
            os,
            devices,
        })
    }
}

fn strings(column: &dyn Array) -> Result<StringArray> {
    let text = cast(column, &DataType::Utf8)?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .context("a text column")?
        .clone())
}

/// The statistics of `code` over `range`. A code without clicks (or one the
/// lake has never seen) gets zeros, not an error: whether the link exists
/// is the link store's to say.
pub async fn link_stats(
    ctx: &SessionContext,
    code: &str,
    by: Bucket,
    include_bots: bool,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<LinkStats> {
    let bounds = Bounds::parse(range, now)?;
    let columns: Vec<&str> = DIMENSIONS.iter().map(|(_, c)| *c).collect();
    let found = query(
        ctx,
        &format!(
            "SELECT CAST(ts AS BIGINT) AS ts, is_bot, visitor_id, {} FROM clicks WHERE code = {}{}",
            columns.join(", "),
            quoted_code(code)?,
            bounds.sql()
        ),
    )
    .await?;
    let step = step_ms(by);
    // Two halves of the rows, counted at once on two threads, then merged.
    let (first, second) = found.batches.split_at(found.batches.len() / 2);
    let (counter, other) = std::thread::scope(|s| {
        let other = s.spawn(|| count(second, include_bots, step));
        (count(first, include_bots, step), other.join())
    });
    let mut counter = counter?;
    counter.merge(other.map_err(|_| anyhow::anyhow!("counting panicked"))??);
    counter.finish(code, &bounds, by, now)
}

/// Counts the rows of `batches` (ts, is_bot, visitor_id, then the five
/// dimensions).
fn count(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    include_bots: bool,
    step: i64,
) -> Result<Counter> {
    let mut counter = Counter::new(include_bots);
    for b in batches {
        let ts = cast(b.column(0), &DataType::Int64)?;
        let ts = ts
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .context("ts column")?;
        let bots = b
            .column(1)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .context("is_bot column")?;
        let visitors = strings(b.column(2))?;
        let dims: Vec<StringArray> = (0..DIMENSIONS.len())
            .map(|i| strings(b.column(3 + i)))
            .collect::<Result<_>>()?;
        for i in 0..b.num_rows() {
            let value = |d: usize| (!dims[d].is_null(i)).then(|| dims[d].value(i));
            counter.add(
                Row {
                    ts: ts.value(i),
                    is_bot: !bots.is_null(i) && bots.value(i),
                    visitor: visitor_key(visitors.value(i)),
                    values: [value(0), value(1), value(2), value(3), value(4)],
                },
                step,
            );
        }
    }
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(ts: i64, bot: bool, visitor: &str, referrer: Option<&'a str>) -> Row<'a> {
        Row {
            ts,
            is_bot: bot,
            visitor: visitor_key(visitor),
            values: [referrer, None, None, None, None],
        }
    }

    #[test]
    fn counts_merged_from_halves_equal_one_count() {
        let hour = 3_600_000;
        // Overlapping visitors and values across the two halves.
        let rows: Vec<(i64, bool, String, Option<String>)> = (0..200)
            .map(|i| {
                (
                    (i % 7) * hour,
                    i % 11 == 0,
                    format!("v{}", i % 13),
                    (i % 5 != 0).then(|| format!("r{}", i % 17)),
                )
            })
            .collect();
        let add = |c: &mut Counter, part: &[(i64, bool, String, Option<String>)]| {
            for (ts, bot, v, r) in part {
                c.add(row(*ts, *bot, v, r.as_deref()), hour);
            }
        };
        let bounds = Bounds {
            since: None,
            until: None,
        };
        let now = Utc::now();
        for include_bots in [false, true] {
            let mut whole = Counter::new(include_bots);
            add(&mut whole, &rows);
            let mut first = Counter::new(include_bots);
            let mut second = Counter::new(include_bots);
            add(&mut first, &rows[..77]);
            add(&mut second, &rows[77..]);
            first.merge(second);
            assert_eq!(
                first.finish("abc", &bounds, Bucket::Hour, now).unwrap(),
                whole.finish("abc", &bounds, Bucket::Hour, now).unwrap()
            );
        }
    }

    #[test]
    fn visitor_keys_keep_ids_apart() {
        assert_eq!(visitor_key("00ff"), 255);
        assert_ne!(visitor_key("v1"), visitor_key("v2"));
        assert_ne!(visitor_key("ff"), visitor_key("not hex ff"));
        assert_eq!(visitor_key("0123456789abcdef"), 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn breakdowns_add_up_and_fold_the_rest_into_other() {
        let mut c = Counter::new(false);
        let hour = 3_600_000;
        // 12 referrers: r0 has 12 clicks, r1 11, ... r11 1; plus 3 without.
        for (i, n) in (0..12).map(|i| (i, 12 - i)) {
            for k in 0..n {
                c.add(
                    row(k * hour, false, &format!("v{k}"), Some(&format!("r{i:02}"))),
                    hour,
                );
            }
        }
        for k in 0..3 {
            c.add(row(0, false, &format!("w{k}"), None), hour);
        }
        c.add(row(0, true, "bot", Some("r00")), hour);
        let bounds = Bounds {
            since: None,
            until: None,
        };
        let s = c.finish("abc", &bounds, Bucket::Hour, Utc::now()).unwrap();
        let total: u64 = (1..=12).sum::<u64>() + 3;
        assert_eq!(s.clicks, total);
        assert_eq!(s.bot_clicks, 1);
        assert_eq!(s.referrers.len(), TOP_VALUES + 1);
        assert_eq!(s.referrers.iter().map(|r| r.clicks).sum::<u64>(), total);
        assert_eq!(s.referrers[0].value, "r00");
        assert_eq!(s.referrers[0].clicks, 12, "the bot is not counted");
        let other = s.referrers.last().unwrap();
        assert_eq!(other.value, OTHER);
        // (none) ties r09 at 3 clicks and sorts first, so r09 (v0..v2),
        // r10 (v0, v1) and r11 (v0) are folded: 6 clicks, 3 visitors.
        assert_eq!((other.clicks, other.unique_visitors), (6, 3));
        assert!(s.referrers.iter().any(|r| r.value == NONE && r.clicks == 3));
        // Countries are all unknown: one (none) row with every click.
        assert_eq!(s.countries.len(), 1);
        assert_eq!(
            (s.countries[0].value.as_str(), s.countries[0].clicks),
            (NONE, total)
        );
        // The series covers hour 0 to 11, gaps included, and adds up.
        assert_eq!(s.series.len(), 12);
        assert_eq!(s.series.iter().map(|p| p.clicks).sum::<u64>(), total);
        assert_eq!(s.series[0].bucket, "1970-01-01T00:00:00Z");
        assert_eq!(s.unique_visitors, 12 + 3);
    }

    #[test]
    fn bots_count_when_asked_for() {
        let mut c = Counter::new(true);
        c.add(row(0, true, "b", None), 86_400_000);
        c.add(row(0, false, "h", None), 86_400_000);
        let bounds = Bounds {
            since: None,
            until: None,
        };
        let s = c.finish("abc", &bounds, Bucket::Day, Utc::now()).unwrap();
        assert_eq!((s.clicks, s.bot_clicks, s.unique_visitors), (2, 1, 2));
    }
}
