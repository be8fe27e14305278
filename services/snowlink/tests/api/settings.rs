//! Settings as the binary reads them: flags, environment, config file and
//! defaults, in that order of precedence.

use std::process::Command;

fn snowlink() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_snowlink"));
    // Only what each test sets.
    for (key, _) in std::env::vars() {
        if key.starts_with("SNOWLINK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `key -> (value, origin)` from `snowlink settings`.
fn effective(cmd: &mut Command) -> std::collections::BTreeMap<String, (String, String)> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let (key, rest) = line.split_once(" = ").expect("key = value  # origin");
            let (value, origin) = rest.rsplit_once("  # ").expect("an origin");
            (
                key.to_owned(),
                (value.trim_matches('"').to_owned(), origin.to_owned()),
            )
        })
        .collect()
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snowlink.toml");
    std::fs::write(
        &file,
        "cache_capacity = 111\ncache_ttl_secs = 222\nnegative_cache_ttl_secs = 333\n\
         code_secret = \"file-secret-never-shown-0123456789abcdef\"\nscylla_nodes = [\"a:9042\", \"b:9042\"]\n\
         worker_id = 3\n",
    )
    .unwrap();
    let settings = effective(
        snowlink()
            .args(["settings", "--config", file.to_str().unwrap()])
            .args(["--cache-capacity", "1000"])
            .env("SNOWLINK_CACHE_CAPACITY", "2000")
            .env("SNOWLINK_CACHE_TTL_SECS", "2001"),
    );
    let get = |k: &str| settings[k].clone();
    assert_eq!(get("cache_capacity"), ("1000".into(), "flag".into()));
    assert_eq!(get("cache_ttl_secs"), ("2001".into(), "env".into()));
    assert_eq!(
        get("negative_cache_ttl_secs"),
        ("333".into(), "file".into())
    );
    assert_eq!(get("max_url_length"), ("2048".into(), "default".into()));
    assert_eq!(get("scylla_nodes"), ("a:9042,b:9042".into(), "file".into()));
    assert_eq!(get("code_secret"), ("[redacted]".into(), "file".into()));
}

#[test]
fn a_bad_file_value_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snowlink.toml");
    std::fs::write(&file, "cache_ttl_secs = \"soon\"\n").unwrap();
    let out = snowlink()
        .args(["settings", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("snowlink.toml") && err.contains("soon") && err.contains("cache-ttl-secs"),
        "{err}"
    );
    std::fs::write(&file, "cache_ttl = 5\n").unwrap();
    let out = snowlink()
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting \"cache_ttl\""), "{err}");
}
