//! One link's statistics as one document: totals, a gap-filled time series
//! and five breakdowns. It is what `GET /api/v1/links/{code}/stats` of the
//! service answers, so the CLI and the HTTP API give the same numbers.
//!
//! The link's rows are read once (one scan, the code and time bounds pushed
//! down to the Parquet reader) and counted here per UTC day, exactly:
//! unique visitors are distinct `visitor_id`s, never estimates. A visitor
//! id is keyed per day, so the days' distinct counts add up; a long-lived
//! reader keeps each whole day's counts (see [`StatsCache`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Maps and sets of the counting: per click lookups, so a fast hasher
/// (inputs are the lake's values, and the process is short-lived).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use datafusion::arrow::array::{Array, BooleanArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use crate::commands::{
    days_in_range, gap_fill, query, quoted_code, step_ms, Bounds, DayInRange, DAY_MS, HOUR_MS,
};
use crate::lake::Lake;
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

pub use snowlink_events::stats::{LinkStats, StatsPoint as Point, StatsShare as Share};

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

/// One value of a breakdown on one day: its clicks and its distinct
/// visitors, sorted (kept, so that the `(other)` row can count the
/// visitors of several values once).
#[derive(Debug, Default)]
struct ValueDay {
    clicks: u64,
    visitors: Vec<u64>,
}

/// What one UTC day of one link adds to the document. Visitor ids are keyed
/// per UTC day (a visitor is a different id on another day), so distinct
/// counts of days add up exactly, as the daily rollups' do; a day's counts
/// never change while its click files stay the same.
#[derive(Debug, Default)]
pub struct DayCounts {
    clicks: u64,
    bot_clicks: u64,
    visitors: u64,
    /// Clicks per hour (start of the hour, ms).
    hours: Vec<(i64, u64)>,
    shares: [FastMap<String, ValueDay>; 5],
}

impl DayCounts {
    /// Memory held, roughly (for the cache's budget).
    fn bytes(&self) -> usize {
        let shares: usize = self
            .shares
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| 64 + k.len() + v.visitors.len() * 8)
            .sum();
        128 + self.hours.len() * 16 + shares
    }
}

/// Counts the rows of one day.
#[derive(Default)]
struct DayCounter {
    clicks: u64,
    bot_clicks: u64,
    visitors: FastSet<u64>,
    hours: BTreeMap<i64, u64>,
    /// Per dimension: value -> (clicks, visitors).
    shares: [FastMap<String, (u64, FastSet<u64>)>; 5],
}

impl DayCounter {
    fn add(&mut self, row: Row<'_>, include_bots: bool) {
        if row.is_bot {
            self.bot_clicks += 1;
            if !include_bots {
                return;
            }
        }
        self.clicks += 1;
        *self
            .hours
            .entry(row.ts.div_euclid(HOUR_MS) * HOUR_MS)
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

    fn merge(&mut self, other: DayCounter) {
        self.clicks += other.clicks;
        self.bot_clicks += other.bot_clicks;
        self.visitors.extend(other.visitors);
        for (hour, n) in other.hours {
            *self.hours.entry(hour).or_insert(0) += n;
        }
        for (mine, theirs) in self.shares.iter_mut().zip(other.shares) {
            for (value, (clicks, visitors)) in theirs {
                let entry = mine.entry(value).or_default();
                entry.0 += clicks;
                entry.1.extend(visitors);
            }
        }
    }

    fn finish(self) -> DayCounts {
        DayCounts {
            clicks: self.clicks,
            bot_clicks: self.bot_clicks,
            visitors: self.visitors.len() as u64,
            hours: self.hours.into_iter().collect(),
            shares: self.shares.map(|m| {
                m.into_iter()
                    .map(|(value, (clicks, visitors))| {
                        let mut visitors: Vec<u64> = visitors.into_iter().collect();
                        visitors.sort_unstable();
                        (value, ValueDay { clicks, visitors })
                    })
                    .collect()
            }),
        }
    }
}

/// Counts rows into per-day counts. Pure: tested without a lake. Each day's
/// sets hold that day's visitors only, so they stay small.
pub struct Counter {
    include_bots: bool,
    days: BTreeMap<i64, DayCounter>,
}

impl Counter {
    pub fn new(include_bots: bool) -> Self {
        Self {
            include_bots,
            days: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, row: Row<'_>) {
        self.days
            .entry(row.ts.div_euclid(DAY_MS))
            .or_default()
            .add(row, self.include_bots);
    }

    /// Adds what `other` counted (over other rows) to this one.
    pub fn merge(&mut self, other: Counter) {
        for (day, counter) in other.days {
            match self.days.get_mut(&day) {
                Some(mine) => mine.merge(counter),
                None => {
                    self.days.insert(day, counter);
                }
            }
        }
    }

    /// The counts of each day (days since 1970-01-01, UTC).
    pub fn finish(self) -> BTreeMap<i64, DayCounts> {
        self.days
            .into_iter()
            .map(|(day, c)| (day, c.finish()))
            .collect()
    }
}

/// The top values by clicks (ties by value), then `(other)` with the clicks
/// and distinct visitors of all the rest: every breakdown adds up to
/// `clicks`. The rest's visitors are counted once per day however many of
/// its values they clicked through.
fn breakdown(days: &[&DayCounts], dimension: usize) -> Vec<Share> {
    let mut totals: FastMap<&str, (u64, u64)> = FastMap::default();
    for day in days {
        for (value, v) in &day.shares[dimension] {
            let t = totals.entry(value.as_str()).or_default();
            t.0 += v.clicks;
            t.1 += v.visitors.len() as u64;
        }
    }
    let mut all: Vec<(&str, (u64, u64))> = totals.into_iter().collect();
    all.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
    let rest = if all.len() > TOP_VALUES {
        all.split_off(TOP_VALUES)
    } else {
        Vec::new()
    };
    let mut out: Vec<Share> = all
        .into_iter()
        .map(|(value, (clicks, unique_visitors))| Share {
            value: value.to_owned(),
            clicks,
            unique_visitors,
        })
        .collect();
    if !rest.is_empty() {
        let clicks = rest.iter().map(|(_, (c, _))| c).sum();
        let names: FastSet<&str> = rest.iter().map(|(v, _)| *v).collect();
        let mut unique_visitors = 0;
        let mut union: Vec<u64> = Vec::new();
        for day in days {
            union.clear();
            for (value, v) in &day.shares[dimension] {
                if names.contains(value.as_str()) {
                    union.extend_from_slice(&v.visitors);
                }
            }
            union.sort_unstable();
            union.dedup();
            unique_visitors += union.len() as u64;
        }
        out.push(Share {
            value: OTHER.to_owned(),
            clicks,
            unique_visitors,
        });
    }
    out
}

/// The document from the counts of the days in range.
pub(crate) fn document(
    code: &str,
    days: &[&DayCounts],
    bounds: &Bounds,
    by: Bucket,
    now: DateTime<Utc>,
) -> Result<LinkStats> {
    let step = step_ms(by);
    let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
    for day in days {
        for (hour, n) in &day.hours {
            *buckets.entry(hour.div_euclid(step) * step).or_insert(0) += *n as i64;
        }
    }
    let (times, values) = gap_fill(&buckets, bounds, by, now)?;
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
    let [referrers, countries, browsers, os, devices] = std::array::from_fn(|d| breakdown(days, d));
    Ok(LinkStats {
        code: code.to_owned(),
        since: bounds.since.map(|t| rfc(t.timestamp_millis())),
        until: bounds.until.map(|t| rfc(t.timestamp_millis())),
        clicks: days.iter().map(|d| d.clicks).sum(),
        unique_visitors: days.iter().map(|d| d.visitors).sum(),
        bot_clicks: days.iter().map(|d| d.bot_clicks).sum(),
        series,
        referrers,
        countries,
        browsers,
        os,
        devices,
    })
}

fn strings(column: &dyn Array) -> Result<StringArray> {
    let text = cast(column, &DataType::Utf8)?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .context("a text column")?
        .clone())
}

/// A day's counts kept by a long-lived reader, per link, bots counted or
/// not, and the day's click files: a question over days it has counted
/// reads only the days it has not (the open day, days cut by a bound, days
/// whose files changed). Entries are dropped oldest first past the budget.
pub struct StatsCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<CacheKey, (Arc<DayCounts>, u64)>,
    bytes: usize,
    tick: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    code: String,
    include_bots: bool,
    date: String,
    /// The day's click files, in order.
    files: Vec<String>,
}

/// Memory the cache of one reader may hold.
pub const STATS_CACHE_BYTES: usize = 256 * 1024 * 1024;

impl StatsCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn get(&self, key: &CacheKey) -> Option<Arc<DayCounts>> {
        let mut inner = self.inner.lock().expect("stats cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        let (counts, used) = inner.entries.get_mut(key)?;
        *used = tick;
        Some(counts.clone())
    }

    fn size(key: &CacheKey, counts: &DayCounts) -> usize {
        counts.bytes() + key.code.len() + key.files.iter().map(|f| 24 + f.len()).sum::<usize>()
    }

    fn put(&self, key: CacheKey, counts: Arc<DayCounts>) {
        let size = Self::size(&key, &counts);
        if size > self.budget {
            return;
        }
        let mut inner = self.inner.lock().expect("stats cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, _)) = inner.entries.insert(key.clone(), (counts, tick)) {
            inner.bytes -= Self::size(&key, &old);
        }
        inner.bytes += size;
        if inner.bytes > self.budget {
            let mut by_age: Vec<(u64, CacheKey)> = inner
                .entries
                .iter()
                .map(|(k, (_, used))| (*used, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(used, _)| *used);
            for (_, k) in by_age {
                if inner.bytes <= self.budget * 3 / 4 {
                    break;
                }
                if let Some((old, _)) = inner.entries.remove(&k) {
                    inner.bytes -= Self::size(&k, &old);
                }
            }
        }
    }
}

/// The statistics of `code` over `range`. A code without clicks (or one the
/// lake has never seen) gets zeros, not an error: whether the link exists
/// is the link store's to say.
///
/// Whole days come from the reader's cache when their files are the ones
/// it counted; every other day in range is read from the clicks (the code
/// and time bounds pushed down to the Parquet reader), counted per day on
/// both cores, and kept for the next question.
pub async fn link_stats(
    lake: &Lake,
    code: &str,
    by: Bucket,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<LinkStats> {
    let bounds = Bounds::parse(range, now)?;
    let include_bots = range.include_bots;
    let code_sql = quoted_code(code)?;
    let mut cached: Vec<Arc<DayCounts>> = Vec::new();
    let mut to_keep: BTreeMap<i64, CacheKey> = BTreeMap::new();
    let mut to_read: Vec<&str> = Vec::new();
    for DayInRange {
        date,
        state,
        start,
        whole,
    } in days_in_range(&lake.days, &bounds)
    {
        if whole {
            let key = CacheKey {
                code: code.to_owned(),
                include_bots,
                date: date.clone(),
                files: state.click_files.iter().map(|f| f.path.clone()).collect(),
            };
            if let Some(counts) = lake.stats_cache.get(&key) {
                cached.push(counts);
                continue;
            }
            to_keep.insert(start.timestamp_millis().div_euclid(DAY_MS), key);
        }
        to_read.push(date);
    }
    let mut counted: BTreeMap<i64, DayCounts> = BTreeMap::new();
    if !to_read.is_empty() {
        let columns: Vec<&str> = DIMENSIONS.iter().map(|(_, c)| *c).collect();
        let dates: Vec<String> = to_read.iter().map(|d| format!("'{d}'")).collect();
        let found = query(
            &lake.ctx,
            &format!(
                "SELECT CAST(ts AS BIGINT) AS ts, is_bot, visitor_id, {} FROM clicks \
                 WHERE code = {code_sql} AND date IN ({}){}",
                columns.join(", "),
                dates.join(", "),
                bounds.sql()
            ),
        )
        .await?;
        // Two halves of the rows, counted at once on two threads, then merged.
        let (first, second) = found.batches.split_at(found.batches.len() / 2);
        let (counter, other) = std::thread::scope(|s| {
            let other = s.spawn(|| count(second, include_bots));
            (count(first, include_bots), other.join())
        });
        let mut counter = counter?;
        counter.merge(other.map_err(|_| anyhow::anyhow!("counting panicked"))??);
        counted = counter.finish();
    }
    let mut days: Vec<Arc<DayCounts>> = cached;
    for (day, counts) in counted {
        let counts = Arc::new(counts);
        if let Some(key) = to_keep.remove(&day) {
            lake.stats_cache.put(key, counts.clone());
        }
        days.push(counts);
    }
    // A whole day without a click of this link is kept too: asked again,
    // it is not read again.
    for key in to_keep.into_values() {
        lake.stats_cache.put(key, Arc::new(DayCounts::default()));
    }
    let days: Vec<&DayCounts> = days.iter().map(Arc::as_ref).collect();
    document(code, &days, &bounds, by, now)
}

/// Counts the rows of `batches` (ts, is_bot, visitor_id, then the five
/// dimensions).
fn count(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    include_bots: bool,
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
            counter.add(Row {
                ts: ts.value(i),
                is_bot: !bots.is_null(i) && bots.value(i),
                visitor: visitor_key(visitors.value(i)),
                values: [value(0), value(1), value(2), value(3), value(4)],
            });
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

    fn open() -> Bounds {
        Bounds {
            since: None,
            until: None,
        }
    }

    fn doc(counter: Counter, by: Bucket) -> LinkStats {
        let days = counter.finish();
        let days: Vec<&DayCounts> = days.values().collect();
        document("abc", &days, &open(), by, Utc::now()).unwrap()
    }

    #[test]
    fn counts_merged_from_halves_equal_one_count() {
        // Overlapping visitors and values across the two halves, over
        // three days.
        let rows: Vec<(i64, bool, String, Option<String>)> = (0..300)
            .map(|i| {
                (
                    (i % 7) * HOUR_MS + (i % 3) * DAY_MS,
                    i % 11 == 0,
                    format!("v{}-{}", i % 13, i % 3),
                    (i % 5 != 0).then(|| format!("r{}", i % 17)),
                )
            })
            .collect();
        let add = |c: &mut Counter, part: &[(i64, bool, String, Option<String>)]| {
            for (ts, bot, v, r) in part {
                c.add(row(*ts, *bot, v, r.as_deref()));
            }
        };
        for include_bots in [false, true] {
            let mut whole = Counter::new(include_bots);
            add(&mut whole, &rows);
            let mut first = Counter::new(include_bots);
            let mut second = Counter::new(include_bots);
            add(&mut first, &rows[..77]);
            add(&mut second, &rows[77..]);
            first.merge(second);
            assert_eq!(doc(first, Bucket::Hour), doc(whole, Bucket::Hour));
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
        // 12 referrers: r0 has 12 clicks, r1 11, ... r11 1; plus 3 without.
        for (i, n) in (0..12).map(|i| (i, 12 - i)) {
            for k in 0..n {
                c.add(row(
                    k * HOUR_MS,
                    false,
                    &format!("v{k}"),
                    Some(&format!("r{i:02}")),
                ));
            }
        }
        for k in 0..3 {
            c.add(row(0, false, &format!("w{k}"), None));
        }
        c.add(row(0, true, "bot", Some("r00")));
        let s = doc(c, Bucket::Hour);
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
    fn days_add_up_and_other_counts_a_visitor_once_a_day() {
        let mut c = Counter::new(false);
        // Day 0: "a" through r1 and r2 (both folded into other below), "b"
        // through r1. Day 1: "c" through r2. Eleven busier referrers.
        for i in 0..11 {
            for k in 0..5 {
                c.add(row(
                    k,
                    false,
                    &format!("t{i}-{k}"),
                    Some(&format!("top{i:02}")),
                ));
            }
        }
        c.add(row(1, false, "a", Some("r1")));
        c.add(row(2, false, "a", Some("r2")));
        c.add(row(3, false, "b", Some("r1")));
        c.add(row(DAY_MS + 1, false, "c", Some("r2")));
        let s = doc(c, Bucket::Day);
        let other = s.referrers.last().unwrap();
        assert_eq!(other.value, OTHER);
        // top10 is folded with r1 and r2: 5 + 4 clicks; visitors t10-0..4,
        // a, b (day 0) and c (day 1).
        assert_eq!((other.clicks, other.unique_visitors), (9, 8));
        assert_eq!(s.unique_visitors, 55 + 3);
        assert_eq!(s.series.len(), 2);
        assert_eq!(s.series[1].clicks, 1);
    }

    #[test]
    fn bots_count_when_asked_for() {
        let mut c = Counter::new(true);
        c.add(row(0, true, "b", None));
        c.add(row(0, false, "h", None));
        let s = doc(c, Bucket::Day);
        assert_eq!((s.clicks, s.bot_clicks, s.unique_visitors), (2, 1, 2));
    }

    #[test]
    fn the_cache_keeps_to_its_budget_and_drops_the_oldest() {
        let mut c = Counter::new(false);
        for k in 0..100 {
            c.add(row(k, false, &format!("v{k}"), Some("r")));
        }
        let counts = Arc::new(c.finish().into_values().next().unwrap());
        let key = |date: &str| CacheKey {
            code: "abc".into(),
            include_bots: false,
            date: date.into(),
            files: vec![format!("date={date}/a.parquet")],
        };
        let one = StatsCache::size(&key("2026-01-01"), &counts);
        let cache = StatsCache::new(one * 3);
        for d in ["2026-01-01", "2026-01-02", "2026-01-03"] {
            cache.put(key(d), counts.clone());
        }
        assert!(cache.get(&key("2026-01-01")).is_some());
        cache.put(key("2026-01-04"), counts.clone());
        assert!(cache.get(&key("2026-01-04")).is_some());
        assert!(cache.get(&key("2026-01-01")).is_some(), "used last: kept");
        assert!(cache.get(&key("2026-01-02")).is_none(), "oldest: dropped");
        assert!(cache.inner.lock().unwrap().bytes <= one * 3);
        // Other files of the same day are another day's counts.
        let mut other = key("2026-01-01");
        other.files.push("date=2026-01-01/b.parquet".into());
        assert!(cache.get(&other).is_none());
    }
}
