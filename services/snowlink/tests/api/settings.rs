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

/// Each command takes only the sections it uses: another section's flag is
/// refused as unknown, and its `--help` does not list it.
#[test]
fn each_command_takes_only_the_settings_it_uses() {
    let help = |args: &[&str]| {
        let out = snowlink().args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    // Whether `snowlink ARGS FLAG x` gets past the parsing of FLAG.
    let takes = |args: &[&str], flag: &str| {
        let out = snowlink().args(args).args([flag, "x"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        !err.contains(&format!("unexpected argument '{flag}'"))
    };
    let serve = help(&["serve"]);
    for flag in [
        "--kafka-brokers",
        "--redis-url",
        "--scylla-nodes",
        "--lake",
        "--data-dir",
    ] {
        assert!(serve.contains(flag), "serve takes {flag}");
    }
    let decode = &["decode", "3fK9xQ2mZpA"][..];
    assert!(takes(decode, "--code-secret") && takes(decode, "--data-dir"));
    for flag in [
        "--kafka-brokers",
        "--redis-url",
        "--scylla-nodes",
        "--lake",
        "--listen",
    ] {
        assert!(!takes(decode, flag), "decode does not take {flag}");
    }
    assert!(help(&["decode"]).lines().count() < 40, "a short help");
    for command in [&["keys", "list"][..], &["migrate"]] {
        assert!(takes(command, "--scylla-nodes"), "{command:?}");
        for flag in ["--kafka-brokers", "--redis-url", "--lake", "--code-secret"] {
            assert!(!takes(command, flag), "{command:?} does not take {flag}");
        }
    }
    let import = &["import", "links.csv"][..];
    for flag in [
        "--redis-url",
        "--scylla-nodes",
        "--worker-id",
        "--blocklist",
    ] {
        assert!(takes(import, flag), "import takes {flag}");
    }
    for flag in ["--kafka-brokers", "--lake"] {
        assert!(!takes(import, flag), "import does not take {flag}");
    }
    // A config file with keys of other sections still works for a command
    // that does not take them.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snowlink.toml");
    std::fs::write(
        &file,
        "kafka_brokers = \"127.0.0.1:1\"\nlake = \"./lake\"\n",
    )
    .unwrap();
    let out = snowlink()
        .args(["keys", "list", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
