//! Which hosts a link may point at: not this service under any of its names,
//! not an internal address (unless allowed), not a blocked domain.
//!
//! Hosts are compared in the URL parser's normalised form, so `2130706433`,
//! `0x7f.1`, `127.1` and `[::ffff:127.0.0.1]` are all seen as `127.0.0.1`.
//! Names are not resolved: a public name that resolves to a private address
//! is the DNS owner's choice, and the redirect is followed by the visitor's
//! browser, not by this service.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use url::{Host, Url};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How often, at most, the blocklist file is checked for changes.
const BLOCKLIST_CHECK_MS: i64 = 1_000;

/// The `targets` section of the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetSettings {
    /// Other names and addresses of this service (host or host:port, comma-separated), e.g. a CDN name or the
    /// load balancer's address; links to them would loop. The --public-url host is always one.
    #[arg(
        long,
        env = "SNOWLINK_OWN_HOSTS",
        value_name = "HOST[:PORT],...",
        value_delimiter = ','
    )]
    pub own_hosts: Vec<String>,
    /// Accept targets on loopback, private, link-local and other internal addresses (127.0.0.0/8, 10/8,
    /// 169.254/16, fc00::/7, localhost, ...); refused by default.
    #[arg(
        long,
        env = "SNOWLINK_ALLOW_PRIVATE_TARGETS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub allow_private_targets: bool,
    /// A file of blocked target hosts, one per line (# starts a comment). A line blocks the domain and
    /// every subdomain. Checked for changes every second: creates and edits to a blocked host answer 400
    /// url_blocked, and existing links to it answer 410 link_blocked.
    #[arg(long, env = "SNOWLINK_BLOCKLIST", value_name = "FILE")]
    pub blocklist: Option<PathBuf>,
}

/// A host as the URL parser normalises it, lowercase, without a trailing
/// dot; an IPv4-mapped IPv6 address as its IPv4 address.
pub fn host_key(host: &Host<&str>) -> String {
    match host {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => ip.to_string(),
        },
    }
}

/// The [`host_key`] of `url`'s host, if it has one.
pub fn url_host_key(url: &Url) -> Option<String> {
    url.host().map(|h| host_key(&h))
}

/// Whether a target on `host` would reach something internal: loopback,
/// private, link-local, shared (CGNAT), unspecified, broadcast or multicast
/// addresses, and the `localhost` names.
pub fn is_internal(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Host::Ipv4(ip) => is_internal_v4(*ip),
        Host::Ipv6(ip) => is_internal_v6(*ip),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT.
        || (a == 100 && (64..128).contains(&b))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Which ports of an own host are this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnPort {
    /// Every port (an own-hosts entry without a port).
    Any,
    /// This port, explicit or the scheme's default.
    Port(u16),
    /// The public URL's explicit port, or none: the default port of the
    /// target's scheme, whichever scheme (http://sho.rt loops to
    /// https://sho.rt through the usual upgrade).
    Public(Option<u16>),
}

/// One of this service's names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnHost {
    host: String,
    port: OwnPort,
}

/// The names this service answers to.
#[derive(Debug, Clone, Default)]
pub struct OwnHosts(Vec<OwnHost>);

impl OwnHosts {
    /// The public URL (its host and port) and every `host[:port]` entry.
    pub fn new(public_url: &Url, entries: &[String]) -> anyhow::Result<Self> {
        let mut hosts = Vec::new();
        if let Some(host) = public_url.host() {
            hosts.push(OwnHost {
                host: host_key(&host),
                port: OwnPort::Public(public_url.port()),
            });
        }
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let url = Url::parse(&format!("http://{entry}/"))
                .map_err(|e| anyhow::anyhow!("own host {entry:?} is not a host[:port]: {e}"))?;
            let host = url
                .host()
                .ok_or_else(|| anyhow::anyhow!("own host {entry:?} has no host"))?;
            if url.path() != "/" || !url.username().is_empty() {
                anyhow::bail!("own host {entry:?} is not a host[:port]");
            }
            hosts.push(OwnHost {
                host: host_key(&host),
                port: url.port().map_or(OwnPort::Any, OwnPort::Port),
            });
        }
        Ok(Self(hosts))
    }

    /// Whether `url` points at this service.
    pub fn contains(&self, url: &Url) -> bool {
        let Some(host) = url_host_key(url) else {
            return false;
        };
        self.0.iter().any(|own| {
            own.host == host
                && match own.port {
                    OwnPort::Any => true,
                    OwnPort::Port(p) => url.port_or_known_default() == Some(p),
                    OwnPort::Public(p) => url.port() == p,
                }
        })
    }
}

#[derive(Debug, Default)]
struct BlockSet {
    domains: HashSet<String>,
}

impl BlockSet {
    fn parse(text: &str) -> Self {
        let domains = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                // Entries are normalised as targets are, so `EVIL.example.`
                // and `evil.example` are one entry.
                Url::parse(&format!("http://{l}/"))
                    .ok()
                    .and_then(|u| url_host_key(&u))
                    .unwrap_or_else(|| l.trim_end_matches('.').to_ascii_lowercase())
            })
            .collect();
        Self { domains }
    }

    /// `host` or one of its parent domains is listed.
    fn blocks(&self, host: &str) -> bool {
        if self.domains.is_empty() {
            return false;
        }
        let mut rest = host;
        loop {
            if self.domains.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return false,
            }
        }
    }
}

/// The blocklist file, re-read when it changes (checked at most once a
/// second, by whichever request comes first: no thread to stop).
#[derive(Debug)]
pub struct Blocklist {
    path: Option<PathBuf>,
    set: RwLock<Arc<BlockSet>>,
    /// Modification time and length of the file last read.
    stamp: Mutex<Option<(SystemTime, u64)>>,
    next_check_ms: AtomicI64,
}

impl Blocklist {
    /// An empty list that never changes.
    pub fn none() -> Self {
        Self {
            path: None,
            set: RwLock::new(Arc::default()),
            stamp: Mutex::new(None),
            next_check_ms: AtomicI64::new(i64::MAX),
        }
    }

    /// Reads `path`; a missing or unreadable file at start is an error.
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let list = Self {
            path: Some(path.clone()),
            ..Self::none()
        };
        list.next_check_ms.store(0, Ordering::Relaxed);
        list.reload()
            .map_err(|e| anyhow::anyhow!("reading the blocklist {}: {e}", path.display()))?;
        Ok(list)
    }

    pub fn len(&self) -> usize {
        self.current().domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Arc<BlockSet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the file if its modification time or length changed.
    fn reload(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let meta = std::fs::metadata(path)?;
        let stamp = (meta.modified()?, meta.len());
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == Some(stamp) {
            return Ok(());
        }
        let set = BlockSet::parse(&std::fs::read_to_string(path)?);
        tracing::info!(path = %path.display(), hosts = set.domains.len(), "blocklist loaded");
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *last = Some(stamp);
        Ok(())
    }

    fn refresh(&self) {
        let now = now_ms();
        let next = self.next_check_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_check_ms
                .compare_exchange(
                    next,
                    now + BLOCKLIST_CHECK_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // A file being rewritten or briefly missing keeps the last list.
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "cannot re-read the blocklist; keeping the last one");
        }
    }

    /// Whether `host` (normalised) is blocked.
    pub fn blocks_host(&self, host: &str) -> bool {
        self.refresh();
        self.current().blocks(host)
    }

    /// Whether the stored target `url` is blocked; cheap when the list is
    /// empty, as it is on the redirect path of most deployments.
    pub fn blocks_url(&self, url: &str) -> bool {
        if self.path.is_none() {
            return false;
        }
        self.refresh();
        let set = self.current();
        if set.domains.is_empty() {
            return false;
        }
        Url::parse(url)
            .ok()
            .and_then(|u| url_host_key(&u))
            .is_some_and(|h| set.blocks(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(url: &str) -> String {
        url_host_key(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn internal_addresses_in_every_spelling() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
        ] {
            let u = Url::parse(url).unwrap();
            assert!(is_internal(&u.host().unwrap()), "{url} is internal");
        }
        for url in [
            "https://example.com/",
            "http://8.8.8.8/",
            "http://[2001:4860:4860::8888]/",
            "http://localhost.example.com/",
            "http://100.128.0.1/",
        ] {
            let u = Url::parse(url).unwrap();
            assert!(!is_internal(&u.host().unwrap()), "{url} is public");
        }
    }

    #[test]
    fn own_hosts_match_any_spelling_and_the_port_when_given() {
        let own = OwnHosts::new(
            &Url::parse("https://sho.rt").unwrap(),
            &["cdn.sho.rt".into(), "10.0.0.5:8080".into()],
        )
        .unwrap();
        let has = |u: &str| own.contains(&Url::parse(u).unwrap());
        assert!(has("https://SHO.RT./x"));
        assert!(has("https://sho.rt:443/x"));
        assert!(has("http://sho.rt/x"), "the other scheme's default port");
        assert!(
            !has("https://sho.rt:8443/x"),
            "another port is another service"
        );
        assert!(has("http://cdn.sho.rt:9000/x"), "no port given: any port");
        assert!(has("http://10.0.0.5:8080/x"));
        assert!(has("http://167772165:8080/x"), "the integer form");
        assert!(has("http://[::ffff:10.0.0.5]:8080/x"), "the mapped form");
        assert!(!has("http://10.0.0.5:8081/x"));
        assert!(OwnHosts::new(&Url::parse("https://sho.rt").unwrap(), &["a/b".into()]).is_err());
    }

    #[test]
    fn the_blocklist_matches_domains_and_their_subdomains() {
        let set =
            BlockSet::parse("# phishing\nevil.example\nBAD.Example. # trailing\n\n10.9.8.7\n");
        assert!(set.blocks(&host("https://evil.example/")));
        assert!(set.blocks(&host("https://login.evil.example/")));
        assert!(set.blocks(&host("https://a.b.bad.example/")));
        assert!(set.blocks(&host("http://10.9.8.7/")));
        assert!(!set.blocks(&host("https://notevil.example/")));
        assert!(!set.blocks(&host("https://example/")));
        assert!(!set.blocks(&host("https://evil.example.com/")));
    }

    #[test]
    fn the_blocklist_file_is_reloaded_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocked.txt");
        std::fs::write(&path, "evil.example\n").unwrap();
        let list = Blocklist::open(path.clone()).unwrap();
        assert!(list.blocks_url("https://www.evil.example/a"));
        assert!(!list.blocks_url("https://fine.example/a"));
        std::fs::write(&path, "evil.example\nfine.example\n").unwrap();
        // The next check happens within a second.
        list.next_check_ms.store(0, Ordering::Relaxed);
        assert!(list.blocks_url("https://fine.example/a"));
        std::fs::remove_file(&path).unwrap();
        list.next_check_ms.store(0, Ordering::Relaxed);
        assert!(
            list.blocks_url("https://fine.example/a"),
            "a missing file keeps the last list"
        );
        assert!(Blocklist::open(dir.path().join("missing")).is_err());
    }
}
