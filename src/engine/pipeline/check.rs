//! Stage `health-check`: the app answers over HTTP on its port, at the framework's health path
//! (or the deployment's), with any 2xx/3xx (or the status the deployment expects). The request
//! goes to the guest's address, so the Host header is that address: the Django recipe adds it
//! to ALLOWED_HOSTS. Then the URL and the deployed commit are recorded, the commit that ran
//! before it kept as the previous one (what `rollback` returns to).

use super::{Ctx, StageResult, fail};
use crate::domain::Stage;
use crate::engine::health;
use crate::engine::process::Output;
use crate::protocol::LogStream;
use crate::store::Facts;

pub(super) async fn run(cx: &mut Ctx<'_>) -> StageResult<()> {
    let ip = cx
        .ip
        .clone()
        .ok_or_else(|| fail(Stage::HealthCheck)(&"no address"))?;
    let base = format!("http://{}", host_port(&ip, cx.d.port));
    let url = format!("{base}/");
    let path =
        cx.d.overrides
            .health_path
            .clone()
            .unwrap_or_else(|| cx.framework.health_path.clone());
    let expect = cx.d.overrides.health_status;
    let check_url = format!("{base}{path}");
    let (tx, forward) = cx.reporter.pipe();
    let mut attempts = 0u32;
    let healthy = health::wait_for_status(
        &check_url,
        expect,
        cx.engine.config.timeouts.health,
        |note| {
            // An attempt every half second: the first few, then one line per ~15 s.
            attempts += 1;
            if attempts <= 3 || attempts.is_multiple_of(30) {
                let _ = tx.send(Output {
                    stream: LogStream::Info,
                    lines: vec![note.to_string()],
                });
            }
        },
    )
    .await;
    drop(tx);
    cx.finish_forward(forward).await?;
    let healthy = healthy.map_err(|e| fail(Stage::HealthCheck)(&e))?;
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
    .await
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}
