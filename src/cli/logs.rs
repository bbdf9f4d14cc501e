//! `proxdeck logs`: a deployment's log from the store (`-f` follows its queued or running
//! job to the end, whichever process started it), or with `--app` the app's own log read over
//! SSH.

use super::{CliError, LogsArgs};
use crate::engine::Engine;
use crate::engine::ops::{self, format_line};
use crate::protocol::{LogLine, LogStream};
use std::io::Write;
use tokio::sync::{mpsc, watch};

/// Lines read from the store per call.
const PAGE: usize = 5_000;

pub async fn logs(engine: &Engine, a: &LogsArgs) -> Result<(), CliError> {
    if a.app {
        return app_logs(engine, a).await;
    }
    let key = a.id.clone();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    let json = a.json;
    let print = |page: &[(i64, LogLine)]| -> bool {
        let mut out = std::io::stdout().lock();
        for (_, l) in page {
            let line = if json {
                serde_json::json!({"at": l.at, "stream": l.stream.as_str(), "stage": l.stage, "line": l.text}).to_string()
            } else {
                format_line(l)
            };
            if writeln!(out, "{line}").is_err() {
                return false; // the reader went away (e.g. `| head`)
            }
        }
        out.flush().is_ok()
    };
    let mut after = 0;
    loop {
        let id = d.id.clone();
        let page = engine.db.call(move |s| s.logs(&id, after, PAGE)).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        if !print(&page) {
            return Ok(());
        }
    }
    if !a.follow {
        return Ok(());
    }
    // Following: every job of the deployment, as long as one is queued or running.
    let (_stop_tx, mut stop) = watch::channel(false);
    let stop_on_ctrl_c = tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = _stop_tx.send(true);
    });
    loop {
        let id = d.id.clone();
        let Some(job) = engine.db.call(move |s| s.active_job_for(&id)).await? else {
            break;
        };
        let mut printed = after;
        let mut gone = false;
        ops::follow(
            engine,
            job.id,
            after,
            |page| {
                if let Some((last, _)) = page.last() {
                    printed = *last;
                }
                let ok = print(page);
                gone |= !ok;
                ok
            },
            &mut stop,
        )
        .await?;
        after = printed;
        if gone || *stop.borrow() {
            break;
        }
    }
    stop_on_ctrl_c.abort();
    // Lines stored after the last job ended (none, normally): print them too.
    let id = d.id.clone();
    let rest = engine.db.call(move |s| s.logs(&id, after, PAGE)).await?;
    print(&rest);
    Ok(())
}

/// `logs ID --app [-f]`: the app's own log over SSH; with -f until Ctrl-C.
async fn app_logs(engine: &Engine, a: &LogsArgs) -> Result<(), CliError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<crate::engine::process::Output>();
    let json = a.json;
    let printer = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            let mut text = String::new();
            for l in &o.lines {
                if json {
                    text.push_str(
                        &serde_json::json!({"stream": o.stream.as_str(), "line": l}).to_string(),
                    );
                } else {
                    text.push_str(l);
                }
                text.push('\n');
            }
            let written = if o.stream == LogStream::Stderr && !json {
                std::io::stderr().write_all(text.as_bytes())
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            };
            if written.is_err() {
                break; // the reader went away (e.g. `| head`)
            }
        }
    });
    let result = crate::engine::applogs::app_logs(engine, &a.id, a.lines, a.follow, stop, tx).await;
    let _ = printer.await;
    signals.abort();
    result.map_err(|e| match e {
        crate::engine::applogs::AppLogsError::Store(s) => s.into(),
        other => CliError::failed(other.to_string()),
    })
}
