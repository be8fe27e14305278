//! The questions the CLI answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use crate::lake::Lake;
use crate::model::{bad_question, BadQuestion, Bucket, Dimension, Output, Range};
use snowlink_lake::{DayState, TableKind};
use snowlink_time::{date_of, parse_time};

pub(crate) struct Bounds {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Bounds {
    pub(crate) fn parse(range: &Range, now: DateTime<Utc>) -> Result<Self> {
        let since = range
            .since
            .as_deref()
            .map(|s| parse_time(s, now).map_err(|e| BadQuestion(format!("--since: {e}"))))
            .transpose()?;
        let until = range
            .until
            .as_deref()
            .map(|s| parse_time(s, now).map_err(|e| BadQuestion(format!("--until: {e}"))))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                bad_question!("--since ({s}) must be before --until ({u})");
            }
        }
        Ok(Self { since, until })
    }

    /// SQL conditions, starting with `AND`. The `date` conditions prune
    /// partitions; the `ts` conditions make the bounds exact.
    pub(crate) fn sql(&self) -> String {
        let mut s = String::new();
        if let Some(since) = self.since {
            s += &format!(
                " AND date >= '{}' AND ts >= arrow_cast({}, 'Timestamp(Millisecond, Some(\"UTC\"))')",
                date_of(since),
                since.timestamp_millis()
            );
        }
        if let Some(until) = self.until {
            s += &format!(
                " AND date <= '{}' AND ts < arrow_cast({}, 'Timestamp(Millisecond, Some(\"UTC\"))')",
                date_of(until),
                until.timestamp_millis()
            );
        }
        s
    }
}

/// Codes are `[A-Za-z0-9_-]`; anything else cannot have clicks.
pub(crate) fn quoted_code(code: &str) -> Result<String> {
    if code.is_empty()
        || code.len() > 64
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bad_question!("{code:?} is not a valid short code");
    }
    Ok(format!("'{code}'"))
}

/// Runs a query. The lake is read-only here: statements that would create
/// tables, write files or change settings are refused.
pub(crate) async fn query(ctx: &SessionContext, sql: &str) -> Result<Output> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(Output {
        schema,
        batches,
        sparkline: None,
    })
}

async fn ensure_known(ctx: &SessionContext, code: &str) -> Result<()> {
    let out = query(
        ctx,
        &format!(
            "SELECT COUNT(*) AS n FROM clicks WHERE code = {}",
            quoted_code(code)?
        ),
    )
    .await?;
    let n = out
        .batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    if n == 0 {
        bad_question!("unknown code {code:?}: the lake has no clicks for it");
    }
    Ok(())
}

fn rows(out: &Output) -> usize {
    out.batches.iter().map(RecordBatch::num_rows).sum()
}

/// A rollup of the lake.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rollup {
    Daily,
    Dims,
}

impl Rollup {
    fn kind(self) -> TableKind {
        match self {
            Rollup::Daily => TableKind::Daily,
            Rollup::Dims => TableKind::Dims,
        }
    }
}

/// Which days of the lake a range touches, split into the days a rollup
/// can answer (whole days inside the range whose rollup was counted from
/// exactly the day's clicks: complete days, rolled up since their last
/// late click) and the days that need the raw clicks (days cut by a bound,
/// open days, and days whose rollup is missing or stale).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DayPlan {
    pub from_rollup: Vec<String>,
    pub from_clicks: Vec<String>,
}

/// A day of the lake that a range touches.
pub(crate) struct DayInRange<'a> {
    pub date: &'a String,
    pub state: &'a DayState,
    /// Its midnight (UTC).
    pub start: DateTime<Utc>,
    /// Whether the range holds it whole (not cut by a bound).
    pub whole: bool,
}

/// The days of the lake with clicks that the range touches.
pub(crate) fn days_in_range<'a>(
    days: &'a BTreeMap<String, DayState>,
    bounds: &'a Bounds,
) -> impl Iterator<Item = DayInRange<'a>> + 'a {
    days.iter().filter_map(move |(date, state)| {
        if state.click_files.is_empty() {
            return None;
        }
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let end = start + chrono::Duration::days(1);
        let overlaps =
            bounds.since.is_none_or(|s| s < end) && bounds.until.is_none_or(|u| u > start);
        let whole =
            bounds.since.is_none_or(|s| s <= start) && bounds.until.is_none_or(|u| u >= end);
        overlaps.then_some(DayInRange {
            date,
            state,
            start,
            whole,
        })
    })
}

pub(crate) fn plan_days(
    days: &BTreeMap<String, DayState>,
    bounds: &Bounds,
    rollup: Rollup,
) -> Result<DayPlan> {
    let mut plan = DayPlan::default();
    for DayInRange {
        date, state, whole, ..
    } in days_in_range(days, bounds)
    {
        if whole && state.rollup_fresh(rollup.kind()) {
            plan.from_rollup.push(date.clone());
        } else {
            plan.from_clicks.push(date.clone());
        }
    }
    Ok(plan)
}

/// Every day of the lake the range touches, oldest first.
pub(crate) fn dates_in_range(lake: &Lake, bounds: &Bounds) -> Result<Vec<String>> {
    let plan = plan_days(&lake.days, bounds, Rollup::Daily)?;
    let mut dates = plan.from_rollup;
    dates.extend(plan.from_clicks);
    dates.sort();
    Ok(dates)
}

fn date_list(dates: &[String]) -> String {
    dates
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most clicked links. Whole days come from the daily rollups (one row
/// per link and day instead of one per click); days cut by `--since` or
/// `--until` from the clicks. Visitor ids rotate daily, so per-day distinct
/// visitor counts add up exactly.
///
/// With `only`, links outside that set are left out before the limit (the
/// service passes one owner's codes).
pub async fn top(
    lake: &Lake,
    range: &Range,
    limit: u64,
    only: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    let ctx = &lake.ctx;
    let plan = plan_days(&lake.days, &bounds, Rollup::Daily)?;
    // A name of this question's own: a long-lived session answers several
    // at once.
    let wanted = format!("wanted_codes_{}", uuid_like());
    let filter = match only {
        Some(codes) => {
            let schema = Arc::new(Schema::new(vec![Field::new("code", DataType::Utf8, false)]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(
                    datafusion::arrow::array::StringArray::from_iter_values(codes),
                )],
            )?;
            let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
            ctx.register_table(wanted.as_str(), Arc::new(table))?;
            format!(" AND code IN (SELECT code FROM {wanted})")
        }
        None => String::new(),
    };
    let mut parts = Vec::new();
    if !plan.from_rollup.is_empty() {
        parts.push(format!(
            "SELECT code, {} FROM daily WHERE date IN ({}){filter}",
            range.rollup_counts(),
            date_list(&plan.from_rollup)
        ));
    }
    if !plan.from_clicks.is_empty() {
        parts.push(format!(
            "SELECT code, COUNT(*) AS clicks, COUNT(DISTINCT visitor_id) AS unique_visitors \
             FROM clicks WHERE date IN ({}){}{}{filter} GROUP BY code, date",
            date_list(&plan.from_clicks),
            bounds.sql(),
            range.bots_sql()
        ));
    }
    if parts.is_empty() {
        // Nothing in range: the same columns, no rows.
        parts.push(
            "SELECT code, COUNT(*) AS clicks, COUNT(DISTINCT visitor_id) AS unique_visitors \
             FROM clicks WHERE FALSE GROUP BY code"
                .to_owned(),
        );
    }
    let answer = query(
        ctx,
        &format!(
            "SELECT code, CAST(SUM(clicks) AS BIGINT) AS clicks, \
             CAST(SUM(unique_visitors) AS BIGINT) AS unique_visitors \
             FROM ({}) AS per_day GROUP BY code ORDER BY clicks DESC, code LIMIT {limit}",
            parts.join(" UNION ALL ")
        ),
    )
    .await;
    if only.is_some() {
        let _ = ctx.deregister_table(wanted.as_str());
    }
    answer
}

/// A name no other question of this process uses at the same time.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Most buckets in one time series (over eleven years of hours).
pub const MAX_BUCKETS: i64 = 100_000;

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = snowlink_events::MS_PER_DAY;

/// Milliseconds in a bucket.
pub(crate) fn step_ms(by: Bucket) -> i64 {
    match by {
        Bucket::Hour => HOUR_MS,
        Bucket::Day => DAY_MS,
    }
}

/// Every bucket from the start to the end of the range (the bounds given,
/// else the first and last bucket with clicks) with its count, zero where
/// `counts` (bucket start in ms -> clicks) has none. At most
/// [`MAX_BUCKETS`].
pub(crate) fn gap_fill(
    counts: &std::collections::BTreeMap<i64, i64>,
    bounds: &Bounds,
    by: Bucket,
    now: DateTime<Utc>,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let step = step_ms(by);
    let floor = |t: DateTime<Utc>| t.timestamp_millis().div_euclid(step) * step;
    let start = bounds
        .since
        .map(floor)
        .or_else(|| counts.keys().next().copied());
    let end = bounds
        .until
        .map(|u| floor(u - chrono::Duration::milliseconds(1)))
        .or(bounds.since.map(|_| floor(now)))
        .or_else(|| counts.keys().next_back().copied());
    let (mut times, mut values) = (Vec::new(), Vec::new());
    if let (Some(start), Some(end)) = (start, end) {
        let buckets = (end - start) / step + 1;
        if buckets > MAX_BUCKETS {
            bad_question!(
                "the range holds {buckets} {}s; a time series has at most {MAX_BUCKETS} buckets: \
                 narrow it with --since and --until{}",
                match by {
                    Bucket::Hour => "hour",
                    Bucket::Day => "day",
                },
                match by {
                    Bucket::Hour => ", or use --by day",
                    Bucket::Day => "",
                }
            );
        }
        times.reserve(buckets.max(0) as usize);
        values.reserve(buckets.max(0) as usize);
        let mut t = start;
        while t <= end {
            times.push(t);
            values.push(counts.get(&t).copied().unwrap_or(0));
            t += step;
        }
    }
    Ok((times, values))
}

/// Clicks per hour or day of one link, gap-filled. By day, whole days come
/// from the daily rollups (the link's one row per day) and days cut by a
/// bound from the clicks.
pub async fn timeseries(
    lake: &Lake,
    code: &str,
    by: Bucket,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    let step = step_ms(by);
    let code_sql = quoted_code(code)?;
    let ctx = &lake.ctx;
    let plan = match by {
        Bucket::Day => plan_days(&lake.days, &bounds, Rollup::Daily)?,
        Bucket::Hour => DayPlan::default(),
    };
    let mut parts = Vec::new();
    if !plan.from_rollup.is_empty() {
        // A rollup's day is the bucket: midnight UTC of its date.
        parts.push(format!(
            "SELECT CAST(CAST(CAST(date AS DATE) AS TIMESTAMP) AS BIGINT) / 1000000 AS bucket, \
             {} FROM daily WHERE code = {code_sql} AND date IN ({})",
            range.rollup_clicks(),
            date_list(&plan.from_rollup)
        ));
    }
    if matches!(by, Bucket::Hour) || !plan.from_clicks.is_empty() {
        let days = match by {
            Bucket::Day => format!(" AND date IN ({})", date_list(&plan.from_clicks)),
            Bucket::Hour => String::new(),
        };
        parts.push(format!(
            "SELECT (CAST(ts AS BIGINT) / {step}) * {step} AS bucket, COUNT(*) AS clicks \
             FROM clicks WHERE code = {code_sql}{days}{}{} GROUP BY 1",
            bounds.sql(),
            range.bots_sql()
        ));
    }
    let found = if parts.is_empty() {
        Output {
            schema: Arc::new(Schema::empty()),
            batches: vec![],
            sparkline: None,
        }
    } else {
        query(
            ctx,
            &format!(
                "SELECT CAST(bucket AS BIGINT) AS bucket, CAST(SUM(clicks) AS BIGINT) AS clicks \
                 FROM ({}) AS per_bucket GROUP BY 1 ORDER BY 1",
                parts.join(" UNION ALL ")
            ),
        )
        .await?
    };
    if rows(&found) == 0 {
        ensure_known(ctx, code).await?;
    }
    let mut counts = std::collections::BTreeMap::new();
    for b in &found.batches {
        let buckets = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("bucket column")?;
        let clicks = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("clicks column")?;
        for i in 0..b.num_rows() {
            counts.insert(buckets.value(i), clicks.value(i));
        }
    }
    let (times, values) = gap_fill(&counts, &bounds, by, now)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "bucket",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("clicks", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(Int64Array::from(values.clone())),
        ],
    )?;
    Ok(Output {
        schema,
        batches: vec![batch],
        sparkline: Some(values),
    })
}

/// Clicks and unique visitors of one link per value of a dimension. Whole
/// days come from the `dims` rollups, days cut by a bound from the clicks;
/// visitor ids rotate daily, so the days' distinct visitors add up exactly.
pub async fn breakdown(
    lake: &Lake,
    code: &str,
    by: Dimension,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    let (column, label) = match by {
        Dimension::Referrer => ("referrer_host", "referrer"),
        Dimension::Country => ("country", "country"),
        Dimension::Browser => ("browser", "browser"),
        Dimension::Os => ("os", "os"),
        Dimension::Device => ("device", "device"),
    };
    let dimension = snowlink_lake::DIMENSIONS
        .iter()
        .find(|(_, c)| *c == column)
        .map(|(name, _)| *name)
        .context("a dimension of the rollup")?;
    let code_sql = quoted_code(code)?;
    let ctx = &lake.ctx;
    let plan = plan_days(&lake.days, &bounds, Rollup::Dims)?;
    let mut parts = Vec::new();
    if !plan.from_rollup.is_empty() {
        parts.push(format!(
            "SELECT value, {} FROM dims \
             WHERE code = {code_sql} AND dimension = '{dimension}' AND date IN ({})",
            range.rollup_counts(),
            date_list(&plan.from_rollup)
        ));
    }
    if !plan.from_clicks.is_empty() {
        parts.push(format!(
            "SELECT {column} AS value, COUNT(*) AS clicks, \
             COUNT(DISTINCT visitor_id) AS unique_visitors \
             FROM clicks WHERE code = {code_sql} AND date IN ({}){}{} GROUP BY {column}, date",
            date_list(&plan.from_clicks),
            bounds.sql(),
            range.bots_sql()
        ));
    }
    let out = if parts.is_empty() {
        empty_breakdown(label)
    } else {
        query(
            ctx,
            &format!(
                "SELECT COALESCE(value, '(none)') AS {label}, CAST(SUM(clicks) AS BIGINT) AS clicks, \
                 CAST(SUM(unique_visitors) AS BIGINT) AS unique_visitors \
                 FROM ({}) AS per_day GROUP BY 1 ORDER BY clicks DESC, 1",
                parts.join(" UNION ALL ")
            ),
        )
        .await?
    };
    if rows(&out) == 0 {
        ensure_known(ctx, code).await?;
    }
    Ok(out)
}

/// A breakdown with no rows: its columns, for a range with no days.
fn empty_breakdown(label: &str) -> Output {
    let schema = Arc::new(Schema::new(vec![
        Field::new(label, DataType::Utf8, false),
        Field::new("clicks", DataType::Int64, false),
        Field::new("unique_visitors", DataType::Int64, false),
    ]));
    Output {
        schema,
        batches: vec![],
        sparkline: None,
    }
}

pub async fn sql(ctx: &SessionContext, sql: &str) -> Result<Output> {
    query(ctx, sql).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(clicks: i64, daily: Option<i64>) -> DayState {
        let file = |path: String| snowlink_lake::LiveFile {
            path,
            size: 1,
            rows: Some(clicks),
        };
        DayState {
            clicks,
            click_files: vec![file("date=x/clicks-a.parquet".into())],
            daily_files: daily
                .map(|n| vec![file(snowlink_lake::rollup_file_name("daily", n))])
                .unwrap_or_default(),
            dims_files: vec![],
        }
    }

    #[test]
    fn whole_days_with_fresh_rollups_come_from_rollup() {
        // 11-01 rolled up from its clicks; 11-02 got late clicks since its
        // rollup; 11-03 has none (open).
        let days = BTreeMap::from([
            ("2026-11-01".to_string(), day(10, Some(10))),
            ("2026-11-02".to_string(), day(12, Some(9))),
            ("2026-11-03".to_string(), day(5, None)),
        ]);
        let all = Bounds {
            since: None,
            until: None,
        };
        assert_eq!(
            plan_days(&days, &all, Rollup::Daily).unwrap(),
            DayPlan {
                from_rollup: vec!["2026-11-01".into()],
                from_clicks: vec!["2026-11-02".into(), "2026-11-03".into()],
            }
        );
        // The dims rollup of 11-01 is missing: its clicks answer.
        assert_eq!(
            plan_days(&days, &all, Rollup::Dims).unwrap().from_rollup,
            Vec::<String>::new()
        );
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        // A bound inside 11-01 cuts it; 11-03 is outside the range.
        let cut = Bounds {
            since: Some(t("2026-11-01T12:00:00Z")),
            until: Some(t("2026-11-03T00:00:00Z")),
        };
        assert_eq!(
            plan_days(&days, &cut, Rollup::Daily).unwrap(),
            DayPlan {
                from_rollup: vec![],
                from_clicks: vec!["2026-11-01".into(), "2026-11-02".into()],
            }
        );
    }
}
