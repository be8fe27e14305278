//! Arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::model::{Bucket, Dimension, Range};
use crate::print::{print, Format};

/// Query the Snowlink click lake.
///
/// Reads the Delta tables written by snowlink-aggregate (`clicks`, and the
/// rollups `daily` and `dims`, partitioned by `date`) from a folder or S3, and
/// answers with DataFusion. Time bounds
/// (--since, --until) take a duration back from now (7d, 24h, 30m), a date
/// (2026-11-01, midnight UTC) or an RFC 3339 time; they prune whole days.
/// Every command but `sql` leaves the clicks of known bots out unless given
/// --include-bots, as the service's stats routes do.
///
/// Examples:
///   snowlink-analytics --lake ./lake top --since 7d
///   snowlink-analytics --lake ./lake timeseries docs --by hour --since 24h
///   snowlink-analytics --lake ./lake breakdown docs --by referrer --format json
///   snowlink-analytics --lake ./lake stats docs --since 30d --by day
///   snowlink-analytics --lake ./lake clicks docs --since 2026-11-01 > docs-clicks.csv
///   snowlink-analytics --lake ./lake sql "SELECT date, SUM(clicks) FROM daily GROUP BY date ORDER BY date"
///   snowlink-analytics --lake s3://clicks/lake serve --socket /run/snowlink/analytics.sock
#[derive(Debug, Parser)]
#[command(name = "snowlink-analytics", version, verbatim_doc_comment)]
pub struct Cli {
    /// The lake: a folder, a file:// URL or s3://bucket/prefix (S3 settings
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
    /// AWS_ENDPOINT_URL).
    #[arg(long, env = "SNOWLINK_LAKE", default_value = "./lake", global = true)]
    pub lake: String,

    /// Output: an aligned table for people, CSV, or a JSON array of objects for programs.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Links by clicks, with unique visitors.
    Top {
        #[command(flatten)]
        range: Range,
        /// How many links to show.
        #[arg(long, default_value_t = 10)]
        limit: u64,
        /// Only the links whose codes this file lists, one per line ("-" reads standard input).
        #[arg(long, value_name = "FILE")]
        codes_from: Option<PathBuf>,
    },
    /// Clicks of one link per hour or day, gaps filled with zero.
    Timeseries {
        /// The short code.
        code: String,
        /// Bucket size.
        #[arg(long, value_enum, default_value_t = Bucket::Day)]
        by: Bucket,
        #[command(flatten)]
        range: Range,
    },
    /// Clicks of one link split by referrer host, country, browser, OS or device.
    Breakdown {
        /// The short code.
        code: String,
        /// What to split by.
        #[arg(long, value_enum)]
        by: Dimension,
        #[command(flatten)]
        range: Range,
    },
    /// One link's statistics as one JSON document (whatever --format): clicks, unique visitors, bot clicks,
    /// a gap-filled time series and the top 10 referrers, countries, browsers, OS and devices, each with an
    /// "(other)" row for the rest and "(none)" for clicks without a value, so every breakdown adds up to
    /// the clicks. The same document as the service's GET /api/v1/links/{code}/stats.
    Stats {
        /// The short code.
        code: String,
        /// Bucket size of the series.
        #[arg(long, value_enum, default_value_t = Bucket::Day)]
        by: Bucket,
        #[command(flatten)]
        range: Range,
    },
    /// One link's raw clicks as CSV (whatever --format), oldest first: time, code, referrer, referrer host,
    /// country, browser, OS, device and whether a known bot clicked (bots' clicks only with
    /// --include-bots). Streamed a day at a time. The same answer as the service's
    /// GET /api/v1/links/{code}/clicks.csv.
    Clicks {
        /// The short code.
        code: String,
        #[command(flatten)]
        range: Range,
    },
    /// Any SQL over the tables `clicks`, `daily` and `dims`.
    Sql {
        /// The query, e.g. "SELECT code, COUNT(*) FROM clicks GROUP BY code".
        query: String,
    },
    /// Answer questions over a Unix socket from a session kept open, so no
    /// question pays for a process start or for reading the tables' logs
    /// (the service's stats routes use it). Each connection sends one line
    /// of JSON, {"args": [ARGS...], "stdin": TEXT}, where ARGS are this
    /// command's arguments after --lake; the answer is one line of JSON,
    /// {"ok": true} or {"ok": false, "error": MESSAGE}, then the output.
    Serve {
        /// Where to listen.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Read the tables' new versions this often (match the aggregate's
        /// --every).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", value_name = "DURATION")]
        refresh: std::time::Duration,
    },
}

/// Codes one per line, blank lines skipped; `-` is standard input, or
/// `input` when a request brought its own.
fn read_codes(path: &std::path::Path, input: Option<&str>) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let text = if path.as_os_str() == "-" {
        match input {
            Some(text) => text.to_owned(),
            None => std::io::read_to_string(std::io::stdin())
                .context("reading codes from standard input")?,
        }
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if let Command::Serve { socket, refresh } = &cli.command {
            return crate::serve::serve(&cli.lake, socket, *refresh).await;
        }
        let lake = crate::lake::Lake::open(&cli.lake).await?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        execute(&lake, cli.command, cli.format, None, &mut out).await?;
        use std::io::Write;
        out.flush()?;
        Ok(())
    })
}

/// Answers one command from an open lake, writing the answer to `out`.
/// `input` stands for standard input (`--codes-from -`) when given.
pub async fn execute(
    lake: &crate::lake::Lake,
    command: Command,
    format: Format,
    input: Option<&str>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let ctx = &lake.ctx;
    let now = chrono::Utc::now();
    // What the counts hold, said under a table (a program reading CSV or
    // JSON asked for it, and `--help` says it).
    let mut note = None;
    let output = match command {
        Command::Top {
            range,
            limit,
            codes_from,
        } => {
            let only = codes_from
                .as_deref()
                .map(|p| read_codes(p, input))
                .transpose()?;
            note = Some(range.bots_note());
            commands::top(lake, &range, limit, only.as_deref(), now).await?
        }
        Command::Clicks { code, range } => {
            crate::export::clicks_csv(lake, &code, &range, now, out).await?;
            return Ok(());
        }
        Command::Timeseries { code, by, range } => {
            note = Some(range.bots_note());
            commands::timeseries(lake, &code, by, &range, now).await?
        }
        Command::Breakdown { code, by, range } => {
            note = Some(range.bots_note());
            commands::breakdown(lake, &code, by, &range, now).await?
        }
        Command::Sql { query } => commands::sql(ctx, &query).await?,
        Command::Stats { code, by, range } => {
            let stats = crate::stats::link_stats(lake, &code, by, &range, now).await?;
            serde_json::to_writer(&mut *out, &stats)?;
            writeln!(out)?;
            return Ok(());
        }
        Command::Serve { .. } => anyhow::bail!("serve answers questions; it is not one"),
    };
    print(&output, format, out)?;
    if let (Some(note), Format::Table) = (note, format) {
        writeln!(out, "{note}")?;
    }
    Ok(())
}
