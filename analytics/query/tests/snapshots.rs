//! Every command of `snowlink-analytics`, in every output format, against
//! one small lake whose clicks are fixed: the output is compared with the
//! snapshot in `tests/snapshots/` (`INSTA_UPDATE=always` rewrites them;
//! review the diff). Two whole days are rolled up and a third is not, so
//! answers come from the rollups and from the clicks; some clicks are a
//! bot's, which every command but `sql` leaves out.

use clap::Parser;
use snowlink_analytics::cli::{execute, Cli};
use snowlink_events::ClickEvent;
use snowlink_lake::{
    click_file_name, commit, encode_clicks, refresh_rollups, sorted_batches, Advance, Change,
    Lake as Tables, TableKind,
};

/// 2026-11-01T00:00:00Z.
const DAY: i64 = 1_793_491_200_000;
const HOUR: i64 = 3_600_000;

fn click(i: i64, code: &str, at: i64, referrer: Option<&str>, bot: bool) -> ClickEvent {
    ClickEvent {
        schema_version: 1,
        event_id: i,
        code: code.into(),
        ts: at,
        referrer: referrer.map(|r| format!("https://{r}/page")),
        referrer_host: referrer.map(Into::into),
        user_agent: Some(if bot { "Googlebot/2.1" } else { "Firefox/130" }.into()),
        browser: Some(if bot { "Googlebot" } else { "Firefox" }.into()),
        os: Some(if bot { "other" } else { "Linux" }.into()),
        device: Some(if bot { "bot" } else { "desktop" }.into()),
        is_bot: bot,
        country: (!bot).then(|| if i % 2 == 0 { "DE" } else { "FR" }.into()),
        visitor_id: format!("{:016x}", if bot { 0xb07 } else { i % 3 }),
    }
}

/// Three days of clicks of `docs` and `blog`, a bot among them.
fn clicks() -> Vec<ClickEvent> {
    let mut out = Vec::new();
    for day in 0..3 {
        for n in 0..(4 + day) {
            let i = out.len() as i64 + 1;
            let at = DAY + day * 24 * HOUR + n * HOUR;
            out.push(click(i, "docs", at, Some("news.example"), false));
        }
        let i = out.len() as i64 + 1;
        out.push(click(
            i,
            "blog",
            DAY + day * 24 * HOUR + 5 * HOUR,
            None,
            false,
        ));
        let i = out.len() as i64 + 1;
        out.push(click(
            i,
            "docs",
            DAY + day * 24 * HOUR + 6 * HOUR,
            None,
            true,
        ));
    }
    out
}

/// The lake: the clicks committed, the first two days rolled up.
async fn lake(dir: &std::path::Path) {
    let tables = Tables::open(dir.to_str().unwrap()).unwrap();
    let mut clicks_table = tables.table(TableKind::Clicks).await.unwrap();
    let events = clicks();
    let mut files = Vec::new();
    for day in 0..3 {
        let of_day: Vec<&ClickEvent> = events
            .iter()
            .filter(|e| (e.ts - DAY).div_euclid(24 * HOUR) == day)
            .collect();
        let encoded = encode_clicks(&sorted_batches(&of_day).unwrap()).unwrap();
        let first = of_day.first().unwrap().event_id;
        let last = of_day.last().unwrap().event_id;
        files.push(
            tables
                .upload(
                    TableKind::Clicks,
                    &snowlink_events::date_of_ms(of_day[0].ts),
                    &click_file_name("s", first, last),
                    encoded.bytes,
                    encoded.rows,
                    Some(encoded.stats),
                )
                .await
                .unwrap(),
        );
    }
    let advance = Advance {
        app_id: "s".into(),
        expected: None,
        next: events.len() as i64 + 1,
    };
    commit(&mut clicks_table, Change::Append(&files), &[advance], &[])
        .await
        .unwrap();
    let mut daily = tables.table(TableKind::Daily).await.unwrap();
    let mut dims = tables.table(TableKind::Dims).await.unwrap();
    // Days before 2026-11-03 are complete: rolled up.
    refresh_rollups(
        &tables,
        &mut clicks_table,
        &mut daily,
        &mut dims,
        "2026-11-03",
    )
    .await
    .unwrap();
}

/// What `snowlink-analytics --lake LAKE ARGS` prints.
async fn run(lake: &snowlink_analytics::lake::Lake, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(
        ["snowlink-analytics", "--lake", "unused"]
            .iter()
            .chain(args)
            .copied(),
    )
    .unwrap();
    let mut out = Vec::new();
    execute(lake, cli.command, cli.format, None, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    lake(dir.path()).await;
    let lake = snowlink_analytics::lake::Lake::open(dir.path().to_str().unwrap())
        .await
        .unwrap();
    // Absolute bounds: the answers do not depend on today.
    let range = ["--since", "2026-11-01", "--until", "2026-11-04"];
    let questions: Vec<(&str, Vec<&str>)> = vec![
        ("top", vec!["top"]),
        ("top_with_bots", vec!["top", "--include-bots"]),
        (
            "timeseries_day",
            [&["timeseries", "docs"][..], &range].concat(),
        ),
        (
            "timeseries_hour",
            vec![
                "timeseries",
                "blog",
                "--by",
                "hour",
                "--since",
                "2026-11-03",
                "--until",
                "2026-11-03T08:00:00Z",
            ],
        ),
        (
            "breakdown_referrer",
            vec!["breakdown", "docs", "--by", "referrer"],
        ),
        (
            "breakdown_device_with_bots",
            vec!["breakdown", "docs", "--by", "device", "--include-bots"],
        ),
    ];
    for (name, args) in &questions {
        for format in ["table", "csv", "json"] {
            let mut full = vec!["--format", format];
            full.extend(args);
            let out = run(&lake, &full).await;
            insta::assert_snapshot!(format!("{name}_{format}"), out);
        }
    }
    // One document or CSV whatever --format.
    let stats = run(&lake, &[&["stats", "docs"][..], &range].concat()).await;
    let pretty: serde_json::Value = serde_json::from_str(&stats).unwrap();
    insta::assert_snapshot!("stats", serde_json::to_string_pretty(&pretty).unwrap());
    insta::assert_snapshot!("clicks", run(&lake, &["clicks", "docs"]).await);
    insta::assert_snapshot!(
        "clicks_with_bots",
        run(&lake, &["clicks", "docs", "--include-bots"]).await
    );
    insta::assert_snapshot!(
        "sql",
        run(
            &lake,
            &[
                "sql",
                "SELECT date, code, clicks, nonbot_clicks FROM daily ORDER BY date, code"
            ]
        )
        .await
    );
}
