//! Stage `health-check`: the app answers over HTTP on its port, at the framework's health path
//! (or the deployment's), with any 2xx/3xx (or the status the deployment expects; or, for a
//! framework whose catalog entry says `health_any_answer`, any answer below 500). The request
//! goes to the guest's address, so the Host header is that address: the Django recipe adds it
//! to ALLOWED_HOSTS. A deployment with domains is checked through Caddy instead: its first
//! domain's URL, the name sent to the guest's address (SNI and Host are the domain's), the
//! certificate verified (with Caddy's local root, read from the guest, for `--tls internal`
//! and for `acme` until an ACME certificate is there: see `engine::caddy`). Then the URL and
//! the deployed commit are recorded, the commit that ran before it kept as the previous one.
//!
//! While it waits, the app's service is watched over the SSH session (`guest_state`): an app
//! that keeps exiting fails the stage at once, with its last log lines; a port held by a
//! process that is not the app's service (another app answering for this one) fails it at
//! once, naming the process and the deployment proxdeck knows there. An answer counts only
//! once the guest confirms the app's own service listens on the port (when it can tell).

use super::{Ctx, StageResult, fail};
use crate::domain::{Stage, TlsMode};
use crate::engine::caddy;
use crate::engine::guest_state;
use crate::engine::health;
use crate::engine::process::Output;
use crate::engine::ssh::Target;
use crate::protocol::LogStream;
use crate::store::Facts;

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ip = cx
        .ip
        .clone()
        .ok_or_else(|| fail(Stage::HealthCheck)(&"no address"))?;
    let front = caddy::Front::of(&cx.d, &ip)
        .await
        .map_err(|e| fail(Stage::HealthCheck)(&e))?;
    let front = match front {
        Some(mut f) => {
            if f.tls != TlsMode::Off {
                let root = read_local_root(cx).await;
                f.local_root = caddy::take_root(cx.reporter, f.tls, Some(root)).await;
            }
            Some(f)
        }
        None => None,
    };
    let base = match &front {
        Some(f) => format!("{}://{}", f.tls.scheme(), f.domain),
        None => format!("http://{}", host_port(&ip, cx.d.port)),
    };
    let url = format!("{base}/");
    let client = match &front {
        Some(f) => f.client(),
        None => health::client_builder().build().map_err(|e| e.to_string()),
    }
    .map_err(|e| fail(Stage::HealthCheck)(&e))?;
    if let Some(f) = &front {
        cx.info(format!(
            "checking through Caddy: {url} with the name sent to {}",
            f.addr
        ))
        .await?;
    }
    let (path, expect) = health::check_for(&cx.d, Some(&cx.framework));
    let check_url = format!("{base}{path}");
    let (tx, forward) = cx.reporter.pipe();
    let mut attempts = 0u32;
    let notes = tx.clone();
    let healthy = health::wait_with(
        &client,
        &check_url,
        expect,
        cx.engine.config.timeouts.health,
        |note| {
            // The first few attempts, then one line per 50 (every 5 s, then every 25 s).
            attempts += 1;
            if attempts <= 3 || attempts.is_multiple_of(50) {
                let _ = notes.send(Output {
                    stream: LogStream::Info,
                    lines: vec![note.to_string()],
                });
            }
        },
    );
    let probe_command = format!(
        "{}{}",
        guest_state::probe_command(&cx.d.name, &cx.engine.config.guest.app_root),
        guest_state::listeners_command(cx.d.port, &crate::engine::provision::app_user(&cx.d.name))
    );
    let watch = watch_service(
        cx.session.clone(),
        cx.d.name.clone(),
        cx.engine.config.guest.app_root.clone(),
        cx.d.port,
        probe_command.clone(),
        tx.clone(),
    );
    let id = cx.d.id.to_string();
    let port = cx.d.port;
    let outcome = tokio::select! {
        healthy = healthy => healthy.map_err(|e| unhealthy(&e, &id, &path, port)),
        crash = watch => Err(crash),
    };
    drop(notes);
    drop(tx);
    cx.finish_forward(forward).await?;
    let healthy = match outcome {
        Ok(h) => h,
        Err(cause) => {
            let cause = super::release::name_port_holder(cx, cause).await;
            return Err(fail(Stage::HealthCheck)(&cause));
        }
    };
    if let Some(held) = confirm_listener(cx, probe_command).await {
        let cause = super::release::name_port_holder(cx, held).await;
        return Err(fail(Stage::HealthCheck)(&format!(
            "{check_url} answered, but {cause}"
        )));
    }
    let facts = Facts {
        url: Some(url.clone()),
        ..Facts::default()
    };
    let id = cx.d.id.clone();
    let commit = cx.commit.clone();
    cx.engine
        .db
        .call(move |s| {
            s.record_facts(&id, &facts)?;
            match commit {
                Some(c) => s.record_commit(&id, &c),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| fail(Stage::HealthCheck)(&e))?;
    cx.url = Some(url);
    cx.info(format!(
        "{check_url} answered HTTP {} after {} attempt(s)",
        healthy.status, healthy.attempts
    ))
    .await?;
    if let Some(f) = &front {
        caddy::acme_note(cx.reporter, f).await;
    }
    Ok(())
}

/// Caddy's local root certificate, read over the stage's SSH session (put back after).
async fn read_local_root(cx: &mut Ctx<'_>) -> Result<String, String> {
    let Some((session, target)) = cx.session.take() else {
        return Err("no SSH session".into());
    };
    let done = tokio::task::spawn_blocking(move || {
        let r = caddy::local_root(&session, &target);
        (r, session, target)
    })
    .await;
    match done {
        Ok((r, session, target)) => {
            cx.session = Some((session, target));
            r
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The failure's cause, with what to change: a 4xx means the app is up and the path is not
/// one it serves (`--health-path`, or `--health-status`); no answer at all means it does not
/// listen where proxdeck looks.
pub(crate) fn unhealthy(e: &health::HealthError, id: &str, path: &str, port: u16) -> String {
    match e.last_status {
        Some(code) if (400..500).contains(&code) => format!(
            "{e}: the app answers, but not with {} at {path}; give the health check a path it serves: `proxdeck retry {id} --health-path /PATH` (or accept this answer: `proxdeck retry {id} --health-status {code}`)",
            e.wanted
        ),
        Some(_) => format!(
            "{e}: the app answers with an error; its own log says why (`proxdeck logs --app {id}`)"
        ),
        None => format!(
            "{e}: nothing answered HTTP on port {port}; the app must listen on 0.0.0.0 (all addresses) and port {port} ($PORT), and its own log says why it does not (`proxdeck logs --app {id}`)"
        ),
    }
}

/// How often the service is probed while the health check waits.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// After an answer: the app's own service must be among the port's listeners. Returns why
/// not (another process holds the port and the app's service does not), `None` when it is,
/// or when the guest cannot tell.
async fn confirm_listener(cx: &Ctx<'_>, command: String) -> Option<String> {
    let (session, target) = cx.session.clone()?;
    let probe =
        tokio::task::spawn_blocking(move || guest_state::probe(&session, &target, &command))
            .await
            .ok()?
            .ok()?;
    if guest_state::ours_listening(&probe) == Some(false) {
        return guest_state::port_held(&probe, cx.d.port).map(|c| c.to_string());
    }
    None
}

/// Probes the app's service until it crashes (or another process holds its port), then
/// returns why, with its last log lines. Without a session, or when the service cannot be
/// probed, it never returns: the health check alone decides.
async fn watch_service(
    session: Option<(ssh2::Session, Target)>,
    name: String,
    app_root: String,
    port: u16,
    command: String,
    notes: tokio::sync::mpsc::UnboundedSender<Output>,
) -> String {
    let Some((session, target)) = session else {
        return std::future::pending().await;
    };
    let probe = |session: ssh2::Session, target: Target, command: String| {
        tokio::task::spawn_blocking(move || {
            let r = guest_state::probe(&session, &target, &command);
            (r, session, target)
        })
    };
    let Ok((first, mut session, mut target)) = probe(session, target, command.clone()).await else {
        return std::future::pending().await;
    };
    let base = match first {
        Ok(p) => p,
        Err(e) => {
            let _ = notes.send(Output {
                stream: LogStream::Info,
                lines: vec![format!(
                    "the app's service cannot be watched ({e}); the health check alone decides"
                )],
            });
            return std::future::pending().await;
        }
    };
    if let Some(held) = guest_state::port_held(&base, port) {
        return held.to_string();
    }
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Ok((now, s, t)) = probe(session, target, command.clone()).await else {
            return std::future::pending().await;
        };
        (session, target) = (s, t);
        // A probe that fails once (a slow guest) is not a verdict; the next one may answer.
        let Some(crash) = now.ok().and_then(|now| {
            guest_state::port_held(&now, port).or_else(|| guest_state::verdict(&base, &now))
        }) else {
            continue;
        };
        if matches!(crash, guest_state::Crash::PortHeld { .. }) {
            return crash.to_string();
        }
        let (app, root) = (name.clone(), app_root.clone());
        let lines = tokio::task::spawn_blocking(move || {
            guest_state::last_lines(&session, &target, &app, &root)
        })
        .await
        .unwrap_or_default();
        return if lines.is_empty() {
            format!("{crash}; its log is empty or cannot be read (`proxdeck logs --app {name}`)")
        } else {
            format!(
                "{crash}; its last log lines:\n    | {}",
                lines.join("\n    | ")
            )
        };
    }
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::health::{Expect, HealthError};

    fn error(last_status: Option<u16>) -> HealthError {
        HealthError {
            url: "http://10.0.0.5:8000/docs".into(),
            secs: 60,
            last: "HTTP 404 Not Found".into(),
            wanted: Expect::Success.words(),
            last_status,
        }
    }

    #[test]
    fn a_4xx_names_the_health_path_flag_with_the_command() {
        let cause = unhealthy(&error(Some(404)), "k3x9ta", "/docs", 8000);
        assert!(
            cause.contains("`proxdeck retry k3x9ta --health-path /PATH`"),
            "{cause}"
        );
        assert!(cause.contains("--health-status 404"), "{cause}");
        assert!(!cause.contains("0.0.0.0"), "{cause}");
        let cause = unhealthy(&error(None), "k3x9ta", "/", 8000);
        assert!(cause.contains("0.0.0.0"), "{cause}");
        assert!(cause.contains("`proxdeck logs --app k3x9ta`"), "{cause}");
        let cause = unhealthy(&error(Some(502)), "k3x9ta", "/", 8000);
        assert!(cause.contains("`proxdeck logs --app k3x9ta`"), "{cause}");
    }
}
