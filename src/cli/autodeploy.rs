//! `proxdeck auto-deploy ID [on|off]`: turns deploy-on-push on or off for a deployment and
//! shows its state (the commit seen last, the next look, the last failure). The polling is
//! the worker's (`engine::autodeploy`); turning it on makes sure the worker runs.

use super::{AutoDeployArgs, CliError, print_json};
use crate::domain::present;
use crate::engine::Engine;
use crate::store::autodeploy::AutoDeploy;

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

pub(super) async fn command(engine: &Engine, a: &AutoDeployArgs) -> Result<(), CliError> {
    let (d, state) = match a.state.as_deref() {
        Some(state) => crate::engine::autodeploy::set(engine, &a.id, state == "on")
            .await
            .map_err(CliError::failed)?,
        None => {
            let key = a.id.clone();
            let d = engine.db.call(move |s| s.find(&key)).await?;
            let id = d.id.clone();
            let state = engine
                .db
                .call(move |s| s.auto_deploy(&id))
                .await?
                .unwrap_or(AutoDeploy {
                    deployment: d.id.clone(),
                    ..AutoDeploy::default()
                });
            (d, state)
        }
    };
    if a.json {
        return print_json(&state);
    }
    let every = engine.config.auto_deploy.interval.as_secs();
    if !state.enabled {
        println!("auto-deploy is off for {}", present::who(&d));
        return Ok(());
    }
    println!(
        "auto-deploy is on for {}: the worker looks at {} of {} every {every} s and redeploys when its commit changes",
        present::who(&d),
        if d.git_ref.is_empty() {
            "the default branch"
        } else {
            &d.git_ref
        },
        d.repo
    );
    if let Some(seen) = &state.last_seen {
        println!("  last seen: {seen}");
    }
    if state.next_check_at > 0 {
        println!("  next look: {}", when(state.next_check_at));
    }
    if let Some(job) = state.job {
        println!("  redeploy job {job} queued by auto-deploy");
    }
    if let Some(e) = &state.last_error {
        println!(
            "  last failure ({} in a row, {}): {e}",
            state.failures,
            state.last_error_at.map(when).unwrap_or_default()
        );
    }
    Ok(())
}
