//! Stage `health-check`: the app answers over HTTP on its port; then the URL and the deployed
//! commit are recorded.

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
    let check_url = format!("{base}{}", cx.framework.health_path);
    let (tx, forward) = cx.reporter.pipe();
    let healthy = health::wait_healthy(&check_url, cx.engine.config.timeouts.health, |note| {
        let _ = tx.send(Output {
            stream: LogStream::Info,
            lines: vec![note.to_string()],
        });
    })
    .await;
    drop(tx);
    cx.finish_forward(forward).await?;
    let healthy = healthy.map_err(|e| fail(Stage::HealthCheck)(&e))?;
    let facts = Facts {
        url: Some(url.clone()),
        commit: cx.commit.clone(),
        ..Facts::default()
    };
    let id = cx.d.id.clone();
    cx.engine
        .db
        .call(move |s| s.record_facts(&id, &facts))
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
