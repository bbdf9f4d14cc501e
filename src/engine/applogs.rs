//! The app's own log, read over SSH from its guest: the journal of its systemd unit, the
//! OpenRC service's log file, or the plain supervisor's `run/app.log` (whichever the
//! provisioning installed; `assets/provision/logs.sh.hbs` decides on the guest). With
//! `follow`, lines keep coming until the caller's stop flag is set (Ctrl-C in the CLI).
//!
//! Lines are masked like the deployment's own log (env values and the API token become
//! `***`) before they leave this module. It reads; it never changes the guest.

use super::Engine;
use super::guest;
use super::pipeline;
use super::process::Output;
use super::provision;
use super::ssh::{self, SshError};
use crate::protocol::LogStream;
use crate::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum AppLogsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
}

/// Sends the last `lines` lines of the app's log to `out` (stdout and stderr kept apart), then
/// with `follow` every new line, until `stop` is set.
pub async fn app_logs(
    engine: &Engine,
    id_or_name: &str,
    lines: u32,
    follow: bool,
    stop: Arc<AtomicBool>,
    out: mpsc::UnboundedSender<Output>,
) -> Result<(), AppLogsError> {
    let key = id_or_name.to_string();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    let ip = d.ip.clone().ok_or_else(|| {
        AppLogsError::Unavailable(format!(
            "{} ({}) has no guest address: it never got that far (`proxdeck show {}`)",
            d.name, d.id, d.id
        ))
    })?;
    let env = pipeline::load_env(engine, &d.id);
    let redactor = pipeline::redactor_of(engine, &d.id, &env);
    let script = provision::render_logs(
        &d.name,
        &engine.config.guest.app_root,
        lines.clamp(1, 100_000),
        follow,
    )
    .map_err(|e| AppLogsError::Unavailable(e.to_string()))?;
    let g = guest::resolve(engine, &d, &ip).await?;
    // Connection notes (retries) are not the app's lines: they are not forwarded.
    let (notes, _ignored) = mpsc::unbounded_channel();
    let session = guest::connect(engine, &g, notes).await?;
    let timeout = if follow {
        Duration::from_secs(7 * 24 * 3600)
    } else {
        Duration::from_secs(120)
    };
    let target = g.target.clone();
    let run = tokio::task::spawn_blocking(move || {
        let should_stop = || stop.load(Ordering::Relaxed);
        let mut forward = |stream: LogStream, lines: Vec<String>| {
            let lines = lines.iter().map(|l| redactor.redact(l)).collect();
            let _ = out.send(Output { stream, lines });
        };
        guest::run_script(
            &session,
            &target,
            &script,
            timeout,
            &should_stop,
            &mut forward,
        )
    })
    .await
    .map_err(|e| AppLogsError::Unavailable(e.to_string()))??;
    match run.status {
        0 | ssh::STOPPED => Ok(()),
        3 => Err(AppLogsError::Unavailable(format!(
            "{} has no app log yet: was it ever provisioned? (`proxdeck logs {}`)",
            d.name, d.id
        ))),
        rc => Err(AppLogsError::Unavailable(format!(
            "reading the app's log on {} failed (status {rc})",
            g.target.label()
        ))),
    }
}
