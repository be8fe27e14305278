//! `snowlink-analytics serve`: one long-lived process answers questions
//! over a Unix socket, from a session whose table snapshots stay in memory
//! and are brought up to date every `--refresh`.
//!
//! A question costs its query only: no process start, no reading of the
//! Delta logs. Each connection carries one question, as the CLI's own
//! arguments (`{"args": [...], "stdin": "..."}` on one line); the answer
//! is a [`ServeHeader`] line, `{"ok": true}` and the output, or
//! `{"ok": false, "error": "...", "bad_question": ...}`.
//! The refresh builds a new session beside the one in use and swaps it in,
//! so questions never wait for it.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Deserialize;
use snowlink_events::stats::ServeHeader;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::cli::Cli;
use crate::lake::Lake;

/// One question.
#[derive(Debug, Deserialize)]
struct Request {
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
}

/// Longest question line accepted.
const MAX_REQUEST: usize = 16 * 1024 * 1024;

pub async fn serve(spec: &str, socket: &Path, refresh: Duration) -> Result<()> {
    let lake = Arc::new(RwLock::new(Arc::new(Lake::open(spec).await?)));
    // A socket left by a process that died is in the way; a live one is
    // not ours to take.
    if socket.exists() {
        if UnixStream::connect(socket).await.is_ok() {
            anyhow::bail!("{} is in use by another server", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("listening on {}", socket.display()))?;
    eprintln!("answering on {}", socket.display());
    let refresher = {
        let lake = lake.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(refresh).await;
                let current = lake.read().expect("lake lock").clone();
                match current.reloaded().await {
                    Ok(new) => *lake.write().expect("lake lock") = Arc::new(new),
                    Err(e) => eprintln!("error: refreshing the lake failed: {e:#}"),
                }
            }
        })
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (conn, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let lake = lake.read().expect("lake lock").clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(conn, &lake).await {
                        // A client that left before its answer (a timeout,
                        // a closed request) is not the server's error.
                        if !crate::print::is_broken_pipe(&e) {
                            eprintln!("error: answering a question: {e:#}");
                        }
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
    refresher.abort();
    let _ = std::fs::remove_file(socket);
    Ok(())
}

async fn answer(conn: UnixStream, lake: &Lake) -> Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    reader.read_until(b'\n', &mut line).await?;
    let result = async {
        let request: Request =
            serde_json::from_slice(&line).context("the question is not a JSON request")?;
        let cli = Cli::try_parse_from(
            std::iter::once("snowlink-analytics".to_owned()).chain(request.args),
        )
        .map_err(|e| crate::model::BadQuestion(e.to_string().trim().to_owned()))?;
        let mut out: Vec<u8> = Vec::new();
        crate::cli::execute(
            lake,
            cli.command,
            cli.format,
            request.stdin.as_deref(),
            &mut out,
        )
        .await?;
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    let header = match &result {
        Ok(_) => ServeHeader {
            ok: true,
            error: None,
            bad_question: false,
        },
        Err(e) => ServeHeader {
            ok: false,
            error: Some(format!("{e:#}").replace('\n', " ")),
            bad_question: crate::model::is_bad_question(e),
        },
    };
    let mut line = serde_json::to_vec(&header)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    if let Ok(out) = result {
        write.write_all(&out).await?;
    }
    write.shutdown().await?;
    Ok(())
}
