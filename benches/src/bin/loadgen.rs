//! A load generator for Snowlink's HTTP benchmarks, run as its own process.
//!
//! Keeps `--connections` HTTP/1.1 keep-alive connections busy for
//! `--duration`, either as fast as the server answers (closed loop) or at a
//! fixed total `--rate` (open loop: a request sent late because the server
//! had not yet answered the previous one is timed from when it was due, so a
//! stalled server cannot hide its queueing).
//!
//! Modes:
//! * `get`: `GET /{code}` with codes drawn from `--codes FILE` under a Zipf
//!   popularity (`--zipf S`); any 3xx counts as success. Each request carries
//!   a browser-like `User-Agent`, one of `--agents N` distinct strings drawn
//!   under a Zipf popularity, and most carry a `Referer` from a short list,
//!   so the service's click enrichment sees varied visitors, not one.
//! * `sweep`: `GET /{code}` once for every code of `--codes FILE`, in file
//!   order, then stops (fills the service's cache for a memory reading).
//! * `create`: `POST /api/v1/links` with a fresh URL each time and
//!   `--key`; 201 counts as success; the codes made are written to `--out`.
//!
//! Prints one JSON object: requests, errors, seconds, rps, p50/p99/p99.9 in
//! microseconds.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::distributions::Distribution;
use rand::SeedableRng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Get,
    Sweep,
    Create,
}

#[derive(Debug, Parser)]
struct Args {
    /// host:port of the server.
    #[arg(long)]
    addr: String,
    #[arg(long, value_enum, default_value_t = Mode::Get)]
    mode: Mode,
    /// File with one code per line (get mode).
    #[arg(long)]
    codes: Option<std::path::PathBuf>,
    /// Zipf exponent of code popularity (get mode).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// API key (create mode).
    #[arg(long)]
    key: Option<String>,
    /// Where to write the codes created (create mode).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests per second; unset means as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests in total (create mode).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Distinct User-Agent strings of GET requests (Zipf-popular); 0 sends
    /// no User-Agent and no Referer.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
}

/// The headers that make GET requests look like visits from many browsers.
struct Visitors {
    /// `User-Agent: ...\r\n` lines, most popular first.
    agents: Vec<String>,
    popularity: Option<rand_distr::Zipf<f64>>,
}

/// Browser, crawler and tool user agents, one template a line; `{v}` is a
/// major version, `{b}` a build number and `{m}` a minor number.
/// `benches/zipf.lua` reads the same file and expands it the same way.
const AGENT_TEMPLATES: &str = include_str!("../../agents.txt");

/// `Referer` lines; the empty ones are visits without a referrer.
const REFERRERS: [&str; 8] = [
    "",
    "",
    "Referer: https://www.google.com/\r\n",
    "Referer: https://t.co/\r\n",
    "Referer: https://news.ycombinator.com/\r\n",
    "Referer: https://www.linkedin.com/\r\n",
    "Referer: https://www.reddit.com/r/rust/\r\n",
    "Referer: android-app://com.slack/\r\n",
];

impl Visitors {
    fn new(n: usize) -> Self {
        let templates: Vec<&str> = AGENT_TEMPLATES.lines().filter(|l| !l.is_empty()).collect();
        let t = templates.len();
        let agents = (0..n)
            .map(|i| {
                let (v, m, b) = (100 + (i / t) % 32, (i / t) % 10, (i * 7919) % 6000);
                let ua = templates[i % t]
                    .replace("{v}", &v.to_string())
                    .replace("{m}", &m.to_string())
                    .replace("{b}", &b.to_string());
                format!("User-Agent: {ua}\r\n")
            })
            .collect();
        let popularity = (n > 0).then(|| rand_distr::Zipf::new(n as u64, 1.0).expect("valid zipf"));
        Self { agents, popularity }
    }

    /// The header lines of one visit.
    fn headers(&self, rng: &mut impl rand::Rng) -> (&str, &str) {
        match &self.popularity {
            Some(z) => (
                &self.agents[z.sample(rng) as usize - 1],
                REFERRERS[rng.gen_range(0..REFERRERS.len())],
            ),
            None => ("", ""),
        }
    }
}

struct Outcome {
    hist: Histogram<u64>,
    errors: u64,
    codes: Vec<String>,
}

async fn read_response(
    reader: &mut BufReader<TcpStream>,
    line: &mut String,
) -> std::io::Result<(u16, Vec<u8>)> {
    line.clear();
    reader.read_line(line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok((status, body))
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    id: usize,
    args: Arc<Args>,
    codes: Arc<Vec<String>>,
    visitors: Arc<Visitors>,
    deadline: Instant,
    interval: Option<Duration>,
    budget: Arc<std::sync::atomic::AtomicU64>,
) -> Outcome {
    let mut out = Outcome {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        errors: 0,
        codes: Vec::new(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64);
    let zipf = (!codes.is_empty())
        .then(|| rand_distr::Zipf::new(codes.len() as u64, args.zipf).expect("valid zipf"));
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut line = String::new();
    let mut next_due = Instant::now()
        + interval
            .map(|i| i.mul_f64(id as f64 / args.connections as f64))
            .unwrap_or_default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        // Open loop. When this connection is behind its schedule (the
        // server held the previous answer past this request's due time),
        // latency counts from the due time, so queueing is not hidden.
        // When it is ahead, it waits, and latency counts from the send: the
        // timer's millisecond granularity belongs to this process, not to
        // the server.
        let mut start = Instant::now();
        if let Some(i) = interval {
            let due = next_due;
            next_due += i;
            if start < due {
                tokio::time::sleep_until(due.into()).await;
                start = Instant::now();
            } else {
                start = due;
            }
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let Ok(left) = budget.fetch_update(relaxed, relaxed, |b| b.checked_sub(1)) else {
            break;
        };
        let request = match args.mode {
            Mode::Sweep => format!(
                "GET /{} HTTP/1.1\r\nHost: bench\r\nUser-Agent: snowlink-loadgen\r\n\r\n",
                codes[codes.len() - left as usize]
            ),
            Mode::Get => {
                let rank = zipf
                    .as_ref()
                    .map(|z| z.sample(&mut rng) as usize - 1)
                    .unwrap_or(0);
                let (agent, referrer) = visitors.headers(&mut rng);
                format!(
                    "GET /{} HTTP/1.1\r\nHost: bench\r\n{agent}{referrer}\r\n",
                    codes[rank]
                )
            }
            Mode::Create => {
                n += 1;
                let body = format!("{{\"url\":\"https://example.com/bench/{id}/{n}\"}}");
                format!(
                    "POST /api/v1/links HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    args.key.as_deref().unwrap_or(""),
                    body.len()
                )
            }
        };
        if conn.is_none() {
            match TcpStream::connect(&args.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(BufReader::new(s));
                }
                Err(_) => {
                    out.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let result = async {
            c.get_mut().write_all(request.as_bytes()).await?;
            read_response(c, &mut line).await
        }
        .await;
        match result {
            Ok((status, body)) => {
                let ok = match args.mode {
                    Mode::Get | Mode::Sweep => (300..400).contains(&status),
                    Mode::Create => status == 201,
                };
                if ok {
                    let micros = start.elapsed().as_micros().max(1) as u64;
                    let _ = out.hist.record(micros.min(60_000_000));
                    if matches!(args.mode, Mode::Create) {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            if let Some(code) = v["code"].as_str() {
                                out.codes.push(code.to_owned());
                            }
                        }
                    }
                } else {
                    out.errors += 1;
                }
            }
            Err(_) => {
                out.errors += 1;
                conn = None;
            }
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let codes: Vec<String> = match (&args.mode, &args.codes) {
        (Mode::Get | Mode::Sweep, Some(path)) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        (Mode::Get | Mode::Sweep, None) => anyhow::bail!("get and sweep modes need --codes FILE"),
        (Mode::Create, _) => Vec::new(),
    };
    anyhow::ensure!(
        matches!(args.mode, Mode::Create) || !codes.is_empty(),
        "no codes in --codes"
    );
    let codes = Arc::new(codes);
    let visitors = Arc::new(Visitors::new(args.agents));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(match args.mode {
        // Every code once: the budget counts down through the file.
        Mode::Sweep => codes.len() as u64,
        _ => args.max_requests.unwrap_or(u64::MAX),
    }));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let outcomes: Vec<Outcome> = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| {
                tokio::spawn(worker(
                    i,
                    args.clone(),
                    codes.clone(),
                    visitors.clone(),
                    deadline,
                    interval,
                    budget.clone(),
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("worker"));
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut made = Vec::new();
    for o in outcomes {
        hist.add(&o.hist)?;
        errors += o.errors;
        made.extend(o.codes);
    }
    if let Some(path) = &args.out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for c in &made {
            writeln!(f, "{c}")?;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "requests": hist.len(),
            "errors": errors,
            "seconds": seconds,
            "rps": hist.len() as f64 / seconds,
            "p50_us": hist.value_at_quantile(0.50),
            "p99_us": hist.value_at_quantile(0.99),
            "p999_us": hist.value_at_quantile(0.999),
        })
    );
    Ok(())
}
