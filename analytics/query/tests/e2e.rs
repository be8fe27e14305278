//! End to end with the real binaries: serve, click, aggregate, query; and the
//! same counts from other Parquet readers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snowlink_testkit::free_port;

const ANALYTICS: &str = env!("CARGO_BIN_EXE_snowlink-analytics");

/// Sibling binaries built by the same `cargo test --workspace`.
fn sibling(name: &str) -> PathBuf {
    let path = Path::new(ANALYTICS).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

struct Click {
    code: &'static str,
    ua: &'static str,
    referrer: Option<&'static str>,
    country: Option<&'static str>,
}

/// The clicks sent, as a deterministic plan.
fn plan() -> Vec<Click> {
    let mut clicks = Vec::new();
    for i in 0..30 {
        clicks.push(Click {
            code: "alpha",
            ua: [CHROME, IPHONE, GOOGLEBOT][i % 3],
            referrer: [
                Some("https://news.example.com/post/1"),
                None,
                Some("https://search.example.org/?q=x"),
            ][i % 3],
            country: [Some("FR"), Some("us"), None][i % 3],
        });
    }
    for i in 0..12 {
        clicks.push(Click {
            code: "beta",
            ua: [CHROME, IPHONE][i % 2],
            referrer: None,
            country: Some("JP"),
        });
    }
    for _ in 0..5 {
        clicks.push(Click {
            code: "gamma",
            ua: CHROME,
            referrer: Some("https://news.example.com/"),
            country: Some("DE"),
        });
    }
    clicks
}

fn analytics(lake: &Path, args: &[&str]) -> Output {
    Command::new(ANALYTICS)
        .arg("--lake")
        .arg(lake)
        .args(args)
        .output()
        .unwrap()
}

fn analytics_json(lake: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = analytics(lake, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON array ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
        .as_array()
        .unwrap()
        .clone()
}

fn by_key(rows: &[Value], key: &str, value: &str) -> HashMap<String, i64> {
    rows.iter()
        .map(|r| {
            (
                r[key].as_str().unwrap().to_owned(),
                r[value].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A spawned service, killed when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_flow_from_redirects_to_exact_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = dir.path().join("lake");
    let snowlink = sibling("snowlink");

    let key = Command::new(&snowlink)
        .args(["keys", "create", "--name", "e2e", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();

    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut server = KillOnDrop(
        Command::new(&snowlink)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            // Countries are read only from a header a setting names.
            .args(["--country-header", "CF-IPCountry"])
            .env("SNOWLINK_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{address}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "service not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for alias in ["alpha", "beta", "gamma"] {
        let r = http
            .post(format!("{address}/api/v1/links"))
            .bearer_auth(&key)
            // gamma's stats page is public.
            .json(
                &json!({"url": format!("https://example.com/{alias}"), "alias": alias,
                          "public_stats": alias == "gamma"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["public_stats"], alias == "gamma");
        assert_eq!(
            view["stats_url"],
            format!("{}+", view["short_url"].as_str().unwrap())
        );
    }
    let clicks = plan();
    for c in &clicks {
        let mut req = http
            .get(format!("{address}/{}", c.code))
            .header("user-agent", c.ua);
        if let Some(r) = c.referrer {
            req = req.header("referer", r);
        }
        if let Some(country) = c.country {
            req = req.header("cf-ipcountry", country);
        }
        assert_eq!(req.send().await.unwrap().status(), 302);
    }
    // Not clicks: a HEAD, an unknown code.
    http.head(format!("{address}/alpha")).send().await.unwrap();
    http.get(format!("{address}/nothere")).send().await.unwrap();

    // SIGTERM: the service drains its click queue to the spool before exiting.
    let term = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(wait_exit(&mut server.0, Duration::from_secs(30)).success());

    let out = Command::new(sibling("snowlink-aggregate"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--lake")
        .arg(&lake)
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(
        summary.starts_with(&format!("aggregated {} events", clicks.len())),
        "{summary}"
    );

    // top: the clicks of known bots are left out unless asked for.
    let top = analytics_json(&lake, &["top", "--include-bots"]);
    assert_eq!(
        by_key(&top, "code", "clicks"),
        HashMap::from([
            ("alpha".into(), 30),
            ("beta".into(), 12),
            ("gamma".into(), 5)
        ])
    );
    assert_eq!(top[0]["code"], "alpha", "ordered by clicks");
    // One client address, so visitors differ only by user agent.
    assert_eq!(
        by_key(&top, "code", "unique_visitors"),
        HashMap::from([("alpha".into(), 3), ("beta".into(), 2), ("gamma".into(), 1)])
    );
    let people = analytics_json(&lake, &["top"]);
    assert_eq!(
        by_key(&people, "code", "clicks"),
        HashMap::from([
            ("alpha".into(), 20),
            ("beta".into(), 12),
            ("gamma".into(), 5)
        ])
    );
    assert_eq!(by_key(&people, "code", "unique_visitors")["alpha"], 2);
    let table = String::from_utf8(analytics(&lake, &["top"]).stdout).unwrap();
    assert!(
        table.ends_with("Clicks of known bots left out (--include-bots counts them).\n"),
        "the table says what it counts: {table}"
    );
    assert_eq!(analytics_json(&lake, &["top", "--limit", "1"]).len(), 1);
    assert_eq!(analytics_json(&lake, &["top", "--since", "1h"]).len(), 3);
    assert!(analytics_json(&lake, &["top", "--until", "2020-01-01"]).is_empty());

    // timeseries
    let series = analytics_json(
        &lake,
        &["timeseries", "alpha", "--by", "hour", "--since", "3h"],
    );
    assert!(
        series.len() >= 3,
        "buckets for the whole range, gaps as zero: {series:?}"
    );
    assert_eq!(
        series
            .iter()
            .map(|r| r["clicks"].as_i64().unwrap())
            .sum::<i64>(),
        20
    );
    assert!(series.iter().any(|r| r["clicks"] == 0));
    let with_bots = analytics_json(
        &lake,
        &[
            "timeseries",
            "alpha",
            "--by",
            "hour",
            "--since",
            "3h",
            "--include-bots",
        ],
    );
    assert_eq!(
        with_bots
            .iter()
            .map(|r| r["clicks"].as_i64().unwrap())
            .sum::<i64>(),
        30
    );
    let table = analytics(&lake, &["timeseries", "beta"]);
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("| 12 "), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[lines.len() - 2]
            .chars()
            .all(|c| ('▁'..='█').contains(&c)),
        "sparkline: {table}"
    );

    // breakdowns
    let refs = by_key(
        &analytics_json(
            &lake,
            &["breakdown", "alpha", "--by", "referrer", "--include-bots"],
        ),
        "referrer",
        "clicks",
    );
    assert_eq!(
        refs,
        HashMap::from([
            ("news.example.com".into(), 10),
            ("(none)".into(), 10),
            ("search.example.org".into(), 10)
        ])
    );
    let countries = by_key(
        &analytics_json(
            &lake,
            &["breakdown", "alpha", "--by", "country", "--include-bots"],
        ),
        "country",
        "clicks",
    );
    assert_eq!(
        countries,
        HashMap::from([("FR".into(), 10), ("US".into(), 10), ("(none)".into(), 10)])
    );
    let devices = by_key(
        &analytics_json(
            &lake,
            &["breakdown", "alpha", "--by", "device", "--include-bots"],
        ),
        "device",
        "clicks",
    );
    assert_eq!(
        devices,
        HashMap::from([
            ("desktop".into(), 10),
            ("mobile".into(), 10),
            ("bot".into(), 10)
        ])
    );
    assert_eq!(
        by_key(
            &analytics_json(&lake, &["breakdown", "alpha", "--by", "device"]),
            "device",
            "clicks",
        ),
        HashMap::from([("desktop".into(), 10), ("mobile".into(), 10)]),
        "bots left out by default"
    );
    let browsers = by_key(
        &analytics_json(&lake, &["breakdown", "beta", "--by", "browser"]),
        "browser",
        "clicks",
    );
    assert_eq!(browsers.get("Chrome"), Some(&6));
    assert_eq!(browsers.values().sum::<i64>(), 12);
    let os = analytics_json(&lake, &["breakdown", "gamma", "--by", "os"]);
    assert_eq!(os.len(), 1);

    // Today is still open: its questions are answered from the clicks,
    // and `snowlink-aggregate rollups` (complete days only) changes no
    // answer.
    let questions: [&[&str]; 4] = [
        &["breakdown", "alpha", "--by", "referrer"],
        &["breakdown", "beta", "--by", "country"],
        &["timeseries", "alpha", "--by", "day", "--since", "2d"],
        &["timeseries", "beta", "--by", "day"],
    ];
    let before: Vec<Vec<Value>> = questions.iter().map(|q| analytics_json(&lake, q)).collect();
    let out = Command::new(sibling("snowlink-aggregate"))
        .arg("--lake")
        .arg(&lake)
        .arg("rollups")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<Vec<Value>> = questions.iter().map(|q| analytics_json(&lake, q)).collect();
    assert_eq!(before, after);

    // stats: one document, the same numbers as the other commands
    let stats = |args: &[&str]| -> Value {
        let out = analytics(&lake, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = stats(&[
        "stats",
        "alpha",
        "--by",
        "hour",
        "--since",
        "3h",
        "--include-bots",
    ]);
    assert_eq!(
        (all["clicks"].as_u64(), all["bot_clicks"].as_u64()),
        (Some(30), Some(10))
    );
    assert_eq!(all["unique_visitors"], 3, "as top says");
    let shares = |doc: &Value, dim: &str| -> HashMap<String, i64> {
        doc[dim]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["value"].as_str().unwrap().to_owned(),
                    r["clicks"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        shares(&all, "referrers"),
        refs,
        "as breakdown --by referrer says"
    );
    assert_eq!(shares(&all, "countries"), countries);
    assert_eq!(shares(&all, "devices"), devices);
    let series: Vec<i64> = all["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["clicks"].as_i64().unwrap())
        .collect();
    assert!(
        series.len() >= 3 && series.iter().sum::<i64>() == 30,
        "{series:?}"
    );
    let humans = stats(&["stats", "alpha"]);
    assert_eq!(
        (humans["clicks"].as_u64(), humans["bot_clicks"].as_u64()),
        (Some(20), Some(10))
    );
    assert_eq!(
        humans["clicks"], people[0]["clicks"],
        "the same default as top"
    );
    for dim in ["referrers", "countries", "browsers", "os", "devices"] {
        assert_eq!(
            shares(&humans, dim).values().sum::<i64>(),
            20,
            "{dim} adds up to the clicks: {humans}"
        );
    }
    assert!(!shares(&humans, "devices").contains_key("bot"));
    let none = stats(&["stats", "nosuchcode"]);
    assert_eq!(
        (
            none["clicks"].as_u64(),
            none["series"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    stats_agree_with_duckdb(&lake, "alpha", &all);
    http_stats_agree_with_the_cli(&snowlink, &data, &lake, &key, &http).await;

    // sql over both tables; bots are flagged, not dropped
    let n = analytics_json(
        &lake,
        &[
            "sql",
            "SELECT COUNT(*) AS n, SUM(CASE WHEN is_bot THEN 1 ELSE 0 END) AS bots FROM clicks",
        ],
    );
    assert_eq!(n[0]["n"], 47);
    assert_eq!(n[0]["bots"], 10);
    let daily = analytics_json(
        &lake,
        &[
            "sql",
            "SELECT SUM(clicks) AS clicks, COUNT(DISTINCT date) AS days FROM daily",
        ],
    );
    // Today is open: its clicks are read from `clicks`, not rolled up yet.
    assert_eq!(daily[0]["clicks"], Value::Null);
    assert_eq!(daily[0]["days"], 0);

    // CSV has a header and one line per row.
    let csv = analytics(&lake, &["top", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(csv.lines().next(), Some("code,clicks,unique_visitors"));
    assert_eq!(csv.lines().count(), 4);

    // No raw IP anywhere in the lake or the spool.
    for f in snowlink_testkit::files_under(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, b"127.0.0.1"),
            "raw IP found in {}",
            f.display()
        );
    }

    // Bad input: one clear line, non-zero exit.
    for (args, needle) in [
        (vec!["timeseries", "nosuchcode"], "unknown code"),
        (
            vec!["breakdown", "nosuchcode", "--by", "os"],
            "unknown code",
        ),
        (vec!["top", "--since", "7x"], "invalid time"),
        (vec!["sql", "SELEC nonsense"], "error"),
        (vec!["sql", "SELECT nope FROM clicks"], "error"),
        (
            vec!["sql", "COPY clicks TO '/tmp/snowlink-copy.parquet'"],
            "not supported",
        ),
        (vec!["sql", "CREATE TABLE t AS SELECT 1"], "not supported"),
    ] {
        let out = analytics(&lake, &args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let out = analytics(&dir.path().join("no-lake"), &["top"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("does not exist"));

    other_readers_agree(&lake, 47);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `GET /api/v1/links/{code}/stats` of a service given the lake answers the
/// CLI's document for the same absolute bounds; it is the owner's only.
async fn http_stats_agree_with_the_cli(
    snowlink: &Path,
    data: &Path,
    lake: &Path,
    key: &str,
    http: &reqwest::Client,
) {
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let _server = KillOnDrop(
        Command::new(snowlink)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .arg("--lake")
            .arg(lake)
            .env("SNOWLINK_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{address}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = chrono::Utc::now();
    let since =
        (now - chrono::Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let until =
        (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = analytics(
        lake,
        &[
            "stats",
            "alpha",
            "--since",
            &since,
            "--until",
            &until,
            "--by",
            "hour",
            "--include-bots",
        ],
    );
    assert!(out.status.success());
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let get =
        |path: String, key: &str| http.get(format!("{address}{path}")).bearer_auth(key).send();
    let r = get(
        format!("/api/v1/links/alpha/stats?since={since}&until={until}&by=hour&include_bots=true"),
        key,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let over_http: Value = r.json().await.unwrap();
    assert_eq!(over_http, cli);
    assert_eq!(over_http["clicks"], 30);
    // Bad questions are 400s; another owner's link is a 404.
    for q in ["by=minute", "since=7x", "since=1h&until=2h", "nope=1"] {
        let r = get(format!("/api/v1/links/alpha/stats?{q}"), key)
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{q}");
    }
    let other = Command::new(snowlink)
        .args(["keys", "create", "--name", "stranger", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let other = String::from_utf8(other.stdout).unwrap().trim().to_owned();
    assert_eq!(
        get("/api/v1/links/alpha/stats".into(), &other)
            .await
            .unwrap()
            .status(),
        404
    );
    let reader = Command::new(snowlink)
        .args([
            "keys",
            "create",
            "--name",
            "reader",
            "--owner",
            "e2e",
            "--scope",
            "links:read",
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    let reader = String::from_utf8(reader.stdout).unwrap().trim().to_owned();
    assert_eq!(
        get("/api/v1/links/alpha/stats".into(), &reader)
            .await
            .unwrap()
            .status(),
        403
    );
    top_csv_and_public_stats(&address, lake, key, &other, http).await;
    stats_page_in_a_browser(&address, key).await;
}

/// `GET /api/v1/stats/top` is the CLI's top of the owner's links with their
/// URLs; `clicks.csv` is the CLI's export, in time order, and DuckDB's
/// count; the public routes and `/{code}+` answer for public links only.
async fn top_csv_and_public_stats(
    address: &str,
    lake: &Path,
    key: &str,
    stranger: &str,
    http: &reqwest::Client,
) {
    let get = |path: &str, key: Option<&str>| {
        let r = http.get(format!("{address}{path}"));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
        .send()
    };
    // top
    let r = get("/api/v1/stats/top?limit=2", Some(key)).await.unwrap();
    assert_eq!(r.status(), 200);
    let top: Value = r.json().await.unwrap();
    let cli = analytics_json(lake, &["top", "--limit", "2"]);
    let links = top["links"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    for (ours, theirs) in links.iter().zip(&cli) {
        assert_eq!(ours["code"], theirs["code"]);
        assert_eq!(ours["clicks"], theirs["clicks"]);
        assert_eq!(ours["unique_visitors"], theirs["unique_visitors"]);
        assert_eq!(
            ours["url"],
            format!("https://example.com/{}", ours["code"].as_str().unwrap())
        );
    }
    let r = get("/api/v1/stats/top", Some(stranger)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"links": []}),
        "another owner's links are not in a key's top"
    );
    for q in ["limit=0", "limit=1001", "since=soon", "limit=x"] {
        let r = get(&format!("/api/v1/stats/top?{q}"), Some(key))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }

    // clicks.csv
    let r = get("/api/v1/links/alpha/clicks.csv", Some(key))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let cli = analytics(lake, &["clicks", "alpha"]);
    assert!(cli.status.success());
    assert_eq!(csv, String::from_utf8(cli.stdout).unwrap());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,code,referrer,referrer_host,country,browser,os,device,bot"
    );
    assert_eq!(lines.len() - 1, 20, "the clicks of alpha, bots left out");
    assert!(!csv.contains(",true\n"));
    let r = get(
        "/api/v1/links/alpha/clicks.csv?include_bots=true",
        Some(key),
    )
    .await
    .unwrap();
    let csv = r.text().await.unwrap();
    let cli = analytics(lake, &["clicks", "alpha", "--include-bots"]);
    assert_eq!(csv, String::from_utf8(cli.stdout).unwrap());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len() - 1, 30, "every click of alpha, bots included");
    let times: Vec<&str> = lines[1..].iter().map(|l| &l[..24]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert_eq!(
        lines[1..].iter().filter(|l| l.ends_with(",true")).count(),
        10,
        "the Googlebot clicks are marked"
    );
    if let Some(out) = snowlink_testkit::python_readers(
        "import sys, duckdb\n\
         from deltalake import DeltaTable\n\
         files = DeltaTable(sys.argv[1] + '/clicks').file_uris()\n\
         print(duckdb.sql(f\"SELECT COUNT(*) FROM read_parquet({files}) WHERE code = 'alpha'\").fetchall()[0][0])",
        &[lake.to_str().unwrap()],
    ) {
        assert_eq!(out.trim(), (lines.len() - 1).to_string(), "DuckDB's count");
    }
    assert_eq!(
        get("/api/v1/links/alpha/clicks.csv", Some(stranger))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get("/api/v1/links/alpha/clicks.csv?until=yesterday", Some(key))
            .await
            .unwrap()
            .status(),
        400
    );

    // Public: gamma only, without a key.
    let r = get("/api/v1/public/links/gamma/stats?by=hour&since=3h", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let public: Value = r.json().await.unwrap();
    let owner: Value = get("/api/v1/links/gamma/stats?by=hour&since=3h", Some(key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["clicks"], 5);
    assert_eq!(public["clicks"], owner["clicks"]);
    assert_eq!(public["referrers"], owner["referrers"]);
    for path in [
        "/api/v1/public/links/alpha/stats",
        "/api/v1/public/links/alpha/clicks.csv",
        "/api/v1/public/links/alpha/qr",
        "/api/v1/public/links/nothere/stats",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "link_not_found", "{path}");
    }
    let csv = get("/api/v1/public/links/gamma/clicks.csv", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 6);
    let qr = get("/api/v1/public/links/gamma/qr?format=svg", None)
        .await
        .unwrap();
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");

    // The page.
    let page = get("/gamma+", None).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("https://example.com/gamma"), "{html}");
    for path in ["/alpha+", "/nothere+"] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("example.com"), "{path} shows its target");
    }
    for asset in ["/assets/stats.js", "/assets/stats.css"] {
        assert_eq!(get(asset, None).await.unwrap().status(), 200, "{asset}");
    }
    // Patched public, then private again.
    let patch = |public: bool| {
        http.patch(format!("{address}/api/v1/links/beta"))
            .bearer_auth(key)
            .json(&json!({ "public_stats": public }))
            .send()
    };
    let r = patch(true).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["public_stats"], true);
    assert_eq!(get("/beta+", None).await.unwrap().status(), 200);
    assert_eq!(patch(false).await.unwrap().status(), 200);
    assert_eq!(get("/beta+", None).await.unwrap().status(), 404);
}

/// The stats page in Debian's Chromium, driven by playwright-core
/// (`services/snowlink/tests/browser`). Skipped, and says so, when node or
/// its packages are missing, unless `./scripts/test` (which installs them)
/// set `SNOWLINK_REQUIRE_BROWSER`.
async fn stats_page_in_a_browser(address: &str, key: &str) {
    let required = std::env::var_os("SNOWLINK_REQUIRE_BROWSER").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/snowlink/tests/browser");
    let ready = dir.join("node_modules/playwright-core").is_dir()
        && Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(
            !required,
            "chromium or playwright-core is missing: scripts/test installs them"
        );
        snowlink_testkit::say("skipped: the browser test needs chromium and playwright-core (scripts/test installs them)");
        return;
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-page");
    let (address, key) = (address.to_owned(), key.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("stats_page.mjs"))
            .args([&address, "gamma", "alpha", &key])
            .arg(&out_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    snowlink_testkit::say(&format!(
        "stats page in Chromium: {} (screenshots in target/tmp/stats-page)",
        String::from_utf8_lossy(&out.stdout).trim()
    ));
}

/// DuckDB counts the same clicks, visitors, bots and referrers of `code`
/// (all time, bots included) as the `stats` document.
fn stats_agree_with_duckdb(lake: &Path, code: &str, stats: &Value) {
    let script = r#"
import json, sys
lake, code = sys.argv[1], sys.argv[2]
import duckdb
from deltalake import DeltaTable
src = f"read_parquet({DeltaTable(lake + '/clicks').file_uris()})"
n, v, b = duckdb.sql(f"SELECT COUNT(*), COUNT(DISTINCT visitor_id), SUM(CASE WHEN is_bot THEN 1 ELSE 0 END) FROM {src} WHERE code = '{code}'").fetchall()[0]
refs = dict(duckdb.sql(f"SELECT COALESCE(referrer_host, '(none)'), COUNT(*) FROM {src} WHERE code = '{code}' GROUP BY 1").fetchall())
print(json.dumps({"clicks": n, "unique_visitors": v, "bot_clicks": int(b), "referrers": refs}))
"#;
    let Some(out) = snowlink_testkit::python_readers(script, &[lake.to_str().unwrap(), code])
    else {
        return;
    };
    let duck: Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["clicks", "unique_visitors", "bot_clicks"] {
        assert_eq!(duck[key], stats[key], "{key}: duckdb {duck} vs {stats}");
    }
    let ours: serde_json::Map<String, Value> = stats["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["value"].as_str().unwrap().to_owned(), r["clicks"].clone()))
        .collect();
    assert_eq!(Value::Object(ours), duck["referrers"]);
}

/// Python's `deltalake`, pyarrow and DuckDB read the same counts from the
/// lake's Delta tables. The test command installs them; elsewhere the
/// check is skipped, and says so (`snowlink_testkit::python_readers`).
fn other_readers_agree(lake: &Path, expected: i64) {
    let script = r#"
import sys
lake = sys.argv[1]
import pyarrow.dataset as ds, duckdb
from deltalake import DeltaTable
clicks = DeltaTable(lake + "/clicks")
t = clicks.to_pyarrow_table()
files = clicks.file_uris()
raw = ds.dataset(files, format="parquet").to_table()
assert str(raw.schema.field("ts").type) == "timestamp[ms, tz=UTC]", raw.schema.field("ts").type
n = duckdb.sql(f"SELECT COUNT(*) FROM read_parquet({files})").fetchall()[0][0]
# Every click is today's, a day still open: no rollup yet.
daily = DeltaTable(lake + "/daily").to_pyarrow_table()
print(t.num_rows, raw.num_rows, n, daily.num_rows)
"#;
    let Some(out) = snowlink_testkit::python_readers(script, &[lake.to_str().unwrap()]) else {
        return;
    };
    let counts: Vec<i64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(
        counts,
        vec![expected, expected, expected, 0],
        "deltalake clicks, pyarrow over the log's files, duckdb clicks, daily rows"
    );
}

/// `snowlink-analytics ... | head`: a reader that leaves early ends the
/// command quietly, in every format, instead of an error about the pipe.
#[test]
fn a_closed_stdout_ends_quietly() {
    let lake = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for format in ["table", "csv", "json"] {
        let out = Command::new(ANALYTICS)
            .arg("--lake")
            .arg(lake.path())
            .args(["--format", format, "sql"])
            .arg("SELECT * FROM generate_series(1, 100000)")
            .stdout(writer.try_clone().unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {stderr}");
        assert!(stderr.is_empty(), "{format}: {stderr}");
    }
}
