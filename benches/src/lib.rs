//! Shared pieces of the benchmarks: a deterministic generator of realistic
//! click events (Zipf link popularity, a mix of browsers, bots, referrers
//! and countries, a pool of visitors).

use rand::distributions::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snowlink_events::{ClickEvent, MS_PER_DAY, SCHEMA_VERSION};

const AGENTS: &[(&str, &str, &str, &str, bool)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "Windows 10", "desktop", false),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "Safari", "iPhone", "mobile", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "Safari", "Mac OSX", "desktop", false),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox", "Linux", "desktop", false),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome", "Android", "mobile", false),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "UNKNOWN", "bot", true),
];
const COUNTRIES: &[&str] = &["US", "FR", "DE", "JP", "GB", "BR", "IN", "CA", "ES", "IT"];

/// The code of the link with popularity rank `rank` (1 = most clicked):
/// an alias (`link-000001`), so that a bench can create the link in a
/// service (a code with a generated code's shape cannot be asked for).
pub fn code_of_rank(rank: u64) -> String {
    format!("link-{rank:06}")
}

/// The visitor id of visitor `v` on the UTC day of `ts`: like the service's
/// (a keyed hash under a key of the day), the same person has another id
/// the next day. Multiplying by an odd constant is a bijection, so distinct
/// (visitor, day) pairs never collide.
fn visitor_id(v: u64, ts: i64) -> String {
    let day = ts.div_euclid(MS_PER_DAY) as u64;
    format!(
        "{:016x}",
        (v ^ (day << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// Click events spread evenly over `[t0, t0 + span_ms)`, links drawn with a
/// Zipf(1.0) popularity over `links` codes. Same seed, same events.
pub struct ClickGen {
    rng: StdRng,
    zipf: rand_distr::Zipf<f64>,
    t0: i64,
    span_ms: i64,
    n: u64,
    i: u64,
}

impl ClickGen {
    pub fn new(seed: u64, n: u64, links: u64, t0: i64, span_ms: i64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            zipf: rand_distr::Zipf::new(links, 1.0).expect("valid Zipf"),
            t0,
            span_ms,
            n,
            i: 0,
        }
    }
}

impl Iterator for ClickGen {
    type Item = ClickEvent;

    fn next(&mut self) -> Option<ClickEvent> {
        if self.i >= self.n {
            return None;
        }
        let i = self.i;
        self.i += 1;
        let ts = self.t0 + (i as i128 * self.span_ms as i128 / self.n as i128) as i64;
        let rng = &mut self.rng;
        let (ua, browser, os, device, bot) = AGENTS[rng.gen_range(0..AGENTS.len())];
        let referrer_host =
            (rng.gen_bool(0.6)).then(|| format!("site{}.example.com", rng.gen_range(0..50)));
        Some(ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: 1 << 40 | i as i64,
            code: code_of_rank(self.zipf.sample(rng) as u64),
            ts,
            referrer: referrer_host
                .as_ref()
                .map(|h| format!("https://{h}/post/{}", rng.gen_range(0..1000))),
            referrer_host,
            user_agent: Some(ua.to_owned()),
            browser: Some(browser.to_owned()),
            os: Some(os.to_owned()),
            device: Some(device.to_owned()),
            is_bot: bot,
            country: Some(COUNTRIES[rng.gen_range(0..COUNTRIES.len())].to_owned()),
            visitor_id: visitor_id(rng.gen_range(0..100_000u64), ts),
        })
    }
}

/// Milliseconds since the epoch of today's UTC midnight: clicks from it on
/// belong to the open day a running worker writes.
pub fn today_ms() -> i64 {
    snowlink_events::now_ms().div_euclid(MS_PER_DAY) * MS_PER_DAY
}

/// The `i`th command-line argument as a number, or `default`.
pub fn arg(i: usize, default: u64) -> anyhow::Result<u64> {
    Ok(std::env::args()
        .nth(i)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

/// Points this process's lake clients at `s3`: they read the AWS settings
/// from the environment.
pub fn use_s3(s3: &snowlink_testkit::Server) {
    for (k, v) in s3.s3_env() {
        std::env::set_var(k, v);
    }
}

/// Moves everything `source` holds into `io`'s lake, as `snowlink-aggregate
/// --once` does (batches of 250,000, no progress bar).
pub fn drain(
    source: &mut dyn snowlink_aggregate::engine::Source,
    io: &snowlink_aggregate::engine::LakeIo,
) -> anyhow::Result<snowlink_aggregate::Summary> {
    snowlink_aggregate::engine::run(
        source,
        io,
        snowlink_aggregate::engine::RunOptions {
            batch_size: 250_000,
            stop: &std::sync::atomic::AtomicBool::new(false),
            bar: &indicatif::ProgressBar::hidden(),
            rollups_every: None,
        },
    )
}

/// Writes `events` (positions `first..=last` of the stream `app`) as one
/// file of the `clicks` table and commits it with the stream's position.
/// Returns the file's size.
pub async fn append_file(
    lake: &snowlink_lake::Lake,
    clicks: &mut snowlink_lake::deltalake_core::DeltaTable,
    events: &[ClickEvent],
    app: &str,
    first: i64,
    last: i64,
) -> anyhow::Result<u64> {
    use snowlink_lake::{Advance, Change, TableKind};
    let date = events[0].date();
    let encoded = snowlink_lake::encode_clicks(&snowlink_lake::sorted_batches(events)?)?;
    let size = encoded.bytes.len() as u64;
    let name = snowlink_lake::click_file_name(app, first, last);
    let file = lake
        .upload(
            TableKind::Clicks,
            &date,
            &name,
            encoded.bytes,
            encoded.rows,
            Some(encoded.stats),
        )
        .await?;
    snowlink_lake::commit(
        clicks,
        Change::Append(std::slice::from_ref(&file)),
        &[Advance {
            app_id: app.into(),
            expected: (first > 1).then_some(first),
            next: last + 1,
        }],
        &[],
    )
    .await?;
    Ok(size)
}
