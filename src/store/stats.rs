//! Statistics over the deployments proxdeck made: totals, how many are active or in flight,
//! the success rate, deployments per day, time per stage and a per-framework breakdown. Read
//! from `deployments`, `status_history` and `stage_history` in one go.
//!
//! Imported entries (`origin = 'imported'`, guests `sync` found) are not deployments and are
//! left out of every number. This module only reads; it must not write or know who asks.

use super::{Result, Store, StoreError};
use crate::domain::{Stage, Status};
use crate::protocol::{DayCount, FrameworkStats, StageTime, Statistics};
use std::collections::{BTreeMap, HashMap, HashSet};

const DAY_SECS: i64 = 86_400;

/// One managed deployment, as the statistics need it.
struct Row {
    id: String,
    framework: String,
    status: Status,
    created_at: i64,
}

impl Store {
    /// Statistics as of `now_ms`, with `days` days of per-day counts (today included), days
    /// cut at midnight `utc_offset_secs` east of UTC (the reader's local time).
    pub fn statistics(&self, now_ms: i64, days: u32, utc_offset_secs: i32) -> Result<Statistics> {
        let rows = self.managed_rows()?;
        let first_running = self.first_status_at("RUNNING")?;
        let ever_failed: HashSet<String> = self.first_status_at("FAILED")?.into_keys().collect();

        let succeeded = |r: &Row| first_running.contains_key(&r.id);
        let failed = |r: &Row| !succeeded(r) && ever_failed.contains(&r.id);

        let mut stats = Statistics {
            total: rows.len() as u64,
            active: count(&rows, |r| r.status.is_active()),
            in_flight: count(&rows, |r| r.status.is_in_flight()),
            succeeded: count(&rows, succeeded),
            failed: count(&rows, failed),
            ..Statistics::default()
        };
        let decided = stats.succeeded + stats.failed;
        stats.success_rate = (decided > 0).then(|| stats.succeeded as f64 / decided as f64);

        // Per day: every day of the range, empty ones included, so a chart has no gaps.
        let offset = i64::from(utc_offset_secs);
        let day_of = |ms: i64| (ms.div_euclid(1000) + offset).div_euclid(DAY_SECS);
        let today = day_of(now_ms);
        let first_day = today - i64::from(days.max(1)) + 1;
        let mut per_day: BTreeMap<i64, (u64, u64)> =
            (first_day..=today).map(|d| (d, (0, 0))).collect();
        for r in &rows {
            if let Some(slot) = per_day.get_mut(&day_of(r.created_at)) {
                slot.0 += 1;
                if failed(r) {
                    slot.1 += 1;
                }
            }
        }
        stats.per_day = per_day
            .into_iter()
            .map(|(day, (deployments, failed))| DayCount {
                day: day_label(day),
                deployments,
                failed,
            })
            .collect();

        stats.stages = self.stage_times()?;

        let mut frameworks: HashMap<&str, (FrameworkStats, i64, u64)> = HashMap::new();
        for r in &rows {
            let (f, total_ms, timed) =
                frameworks.entry(r.framework.as_str()).or_insert_with(|| {
                    (
                        FrameworkStats {
                            framework: r.framework.clone(),
                            deployments: 0,
                            active: 0,
                            succeeded: 0,
                            failed: 0,
                            mean_deploy_ms: None,
                        },
                        0,
                        0,
                    )
                });
            f.deployments += 1;
            f.active += u64::from(r.status.is_active());
            if let Some(at) = first_running.get(&r.id) {
                f.succeeded += 1;
                *total_ms += (at - r.created_at).max(0);
                *timed += 1;
            } else if failed(r) {
                f.failed += 1;
            }
        }
        let mut frameworks: Vec<FrameworkStats> = frameworks
            .into_values()
            .map(|(mut f, total_ms, timed)| {
                f.mean_deploy_ms = (timed > 0).then(|| total_ms / timed as i64);
                f
            })
            .collect();
        frameworks.sort_by(|a, b| {
            b.deployments
                .cmp(&a.deployments)
                .then_with(|| a.framework.cmp(&b.framework))
        });
        stats.frameworks = frameworks;
        Ok(stats)
    }

    fn managed_rows(&self) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, framework, status, created_at FROM deployments WHERE origin != 'imported'",
        )?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter()
            .map(|(id, framework, status, created_at)| {
                Ok(Row {
                    id,
                    framework,
                    status: status.parse().map_err(StoreError::Corrupt)?,
                    created_at,
                })
            })
            .collect()
    }

    /// For each managed deployment that was ever in `status`: the first time it was.
    fn first_status_at(&self, status: &str) -> Result<HashMap<String, i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT h.deployment_id, MIN(h.at) FROM status_history h \
             JOIN deployments d ON d.id = h.deployment_id \
             WHERE d.origin != 'imported' AND h.status = ?1 GROUP BY h.deployment_id",
        )?;
        let rows = stmt
            .query_map([status], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<HashMap<_, _>>>()?;
        Ok(rows)
    }

    /// How long each stage took: from its start to the next stage's start, or to the status
    /// that ended the run (RUNNING, FAILED, STOPPED, DELETED), whichever came first. Stages
    /// still running, and `done` (a marker, not work), are left out.
    fn stage_times(&self) -> Result<Vec<StageTime>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.deployment_id, s.stage, s.at FROM stage_history s \
             JOIN deployments d ON d.id = s.deployment_id \
             WHERE d.origin != 'imported' ORDER BY s.deployment_id, s.seq",
        )?;
        let starts = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT h.deployment_id, h.at FROM status_history h \
             JOIN deployments d ON d.id = h.deployment_id \
             WHERE d.origin != 'imported' \
               AND h.status IN ('RUNNING', 'FAILED', 'STOPPED', 'DELETED') \
             ORDER BY h.deployment_id, h.at",
        )?;
        let mut ends: HashMap<String, Vec<i64>> = HashMap::new();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, at) = row?;
            ends.entry(id).or_default().push(at);
        }

        let mut durations: HashMap<Stage, Vec<i64>> = HashMap::new();
        for (i, (id, stage, at)) in starts.iter().enumerate() {
            let stage: Stage = stage.parse().map_err(StoreError::Corrupt)?;
            if stage == Stage::Done {
                continue;
            }
            let next_start = starts
                .get(i + 1)
                .filter(|(next_id, _, _)| next_id == id)
                .map(|(_, _, t)| *t);
            let terminal = ends.get(id).and_then(|list| {
                // The first end at or after the start (the list is sorted).
                let k = list.partition_point(|t| t < at);
                list.get(k).copied()
            });
            let end = match (next_start, terminal) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => continue,
                },
            };
            durations.entry(stage).or_default().push((end - at).max(0));
        }
        Ok(Stage::ALL
            .into_iter()
            .filter_map(|stage| {
                let mut d = durations.remove(&stage)?;
                d.sort_unstable();
                let runs = d.len() as u64;
                let sum: i64 = d.iter().sum();
                Some(StageTime {
                    stage,
                    runs,
                    mean_ms: sum / runs as i64,
                    median_ms: d[d.len() / 2],
                    max_ms: d[d.len() - 1],
                })
            })
            .collect())
    }
}

fn count(rows: &[Row], f: impl Fn(&Row) -> bool) -> u64 {
    rows.iter().filter(|r| f(r)).count() as u64
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * DAY_SECS, 0)
        .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day {day}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Deployment, DeploymentId, Origin};
    use rusqlite::params;

    /// 2026-01-15 12:00:00 UTC.
    const NOW: i64 = 1_768_478_400_000;
    const DAY: i64 = DAY_SECS * 1000;

    fn insert(s: &mut Store, id: &str, framework: &str, origin: Origin, created_at: i64) {
        s.insert_deployment(&Deployment {
            id: DeploymentId(id.into()),
            name: id.into(),
            repo: "file:///r.git".into(),
            framework: framework.into(),
            origin,
            status: if origin == Origin::Imported {
                Status::Running
            } else {
                Status::Pending
            },
            created_at,
            updated_at: created_at,
            ..Deployment::default()
        })
        .unwrap();
    }

    /// Writes history rows with chosen timestamps (the store's own methods use the clock).
    fn stage(s: &Store, id: &str, stage: Stage, at: i64) {
        s.conn
            .execute(
                "INSERT INTO stage_history (deployment_id, stage, at) VALUES (?1, ?2, ?3)",
                params![id, stage.as_str(), at],
            )
            .unwrap();
    }

    fn status(s: &Store, id: &str, status: Status, at: i64) {
        s.conn
            .execute(
                "INSERT INTO status_history (deployment_id, status, at) VALUES (?1, ?2, ?3)",
                params![id, status.as_str(), at],
            )
            .unwrap();
        s.conn
            .execute(
                "UPDATE deployments SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
            .unwrap();
    }

    #[test]
    fn an_empty_store_has_zeros_and_no_rate() {
        let s = Store::open_in_memory().unwrap();
        let st = s.statistics(NOW, 7, 0).unwrap();
        assert_eq!(st.total, 0);
        assert_eq!(st.success_rate, None);
        assert_eq!(st.per_day.len(), 7);
        assert_eq!(st.per_day[6].day, "2026-01-15");
        assert_eq!(st.per_day[0].day, "2026-01-09");
        assert!(st.stages.is_empty() && st.frameworks.is_empty());
    }

    #[test]
    fn counts_rates_days_stages_and_frameworks() {
        let mut s = Store::open_in_memory().unwrap();
        let t0 = NOW - 2 * DAY;
        // ok1: flask, straight to RUNNING. 10 s preflight, 20 s apply, 5 s health.
        insert(&mut s, "ok1", "flask", Origin::Terraform, t0);
        stage(&s, "ok1", Stage::Preflight, t0 + 1_000);
        status(&s, "ok1", Status::Provisioning, t0 + 1_000);
        stage(&s, "ok1", Stage::TerraformApply, t0 + 11_000);
        stage(&s, "ok1", Stage::HealthCheck, t0 + 31_000);
        stage(&s, "ok1", Stage::Done, t0 + 36_000);
        status(&s, "ok1", Status::Running, t0 + 36_000);

        // bad: flask, fails in terraform-apply after 4 s, then a retry fails again after 6 s.
        let t1 = NOW - DAY;
        insert(&mut s, "bad", "flask", Origin::Terraform, t1);
        stage(&s, "bad", Stage::TerraformApply, t1 + 1_000);
        status(&s, "bad", Status::Failed, t1 + 5_000);
        stage(&s, "bad", Stage::TerraformApply, t1 + 60_000);
        status(&s, "bad", Status::Failed, t1 + 66_000);

        // back: django, failed once, then a retry reached RUNNING: a success.
        insert(&mut s, "back", "django", Origin::Terraform, NOW - 1_000);
        status(&s, "back", Status::Failed, NOW - 900);
        status(&s, "back", Status::Running, NOW - 500);

        // fly: in flight, no verdict.
        insert(&mut s, "fly", "django", Origin::Terraform, NOW - 100);
        status(&s, "fly", Status::Provisioning, NOW - 50);
        stage(&s, "fly", Stage::Render, NOW - 50);

        // An imported guest counts nowhere, whatever its history says.
        insert(&mut s, "imp", "", Origin::Imported, NOW - 10);
        status(&s, "imp", Status::Stopped, NOW - 5);
        stage(&s, "imp", Stage::Provision, NOW - 9);

        // An old one, outside the per-day range.
        insert(&mut s, "old", "flask", Origin::Terraform, NOW - 30 * DAY);

        let st = s.statistics(NOW, 7, 0).unwrap();
        assert_eq!(st.total, 5);
        assert_eq!(st.succeeded, 2);
        assert_eq!(st.failed, 1);
        assert_eq!(st.in_flight, 1);
        // back (RUNNING) and fly (PROVISIONING); ok1 is RUNNING too.
        assert_eq!(st.active, 3);
        let rate = st.success_rate.unwrap();
        assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");

        let days: Vec<(&str, u64, u64)> = st
            .per_day
            .iter()
            .map(|d| (d.day.as_str(), d.deployments, d.failed))
            .collect();
        assert_eq!(days.len(), 7);
        assert_eq!(days[4], ("2026-01-13", 1, 0));
        assert_eq!(days[5], ("2026-01-14", 1, 1));
        assert_eq!(days[6], ("2026-01-15", 2, 0));
        assert_eq!(
            days.iter().map(|d| d.1).sum::<u64>(),
            4,
            "old is out of range"
        );

        let stage_of = |stage: Stage| st.stages.iter().find(|t| t.stage == stage).cloned();
        let pre = stage_of(Stage::Preflight).unwrap();
        assert_eq!((pre.runs, pre.mean_ms), (1, 10_000));
        // Apply: 20 s (ok1), 4 s and 6 s (bad's two failures, ended by FAILED).
        let apply = stage_of(Stage::TerraformApply).unwrap();
        assert_eq!(apply.runs, 3);
        assert_eq!(apply.mean_ms, 10_000);
        assert_eq!(apply.median_ms, 6_000);
        assert_eq!(apply.max_ms, 20_000);
        assert_eq!(stage_of(Stage::HealthCheck).unwrap().mean_ms, 5_000);
        assert!(stage_of(Stage::Done).is_none(), "done is a marker");
        assert!(stage_of(Stage::Render).is_none(), "still running");
        assert!(
            stage_of(Stage::Provision).is_none(),
            "only the imported entry has it"
        );
        let order: Vec<Stage> = st.stages.iter().map(|t| t.stage).collect();
        assert_eq!(
            order,
            [Stage::Preflight, Stage::TerraformApply, Stage::HealthCheck]
        );

        let fw: Vec<(&str, u64, u64, u64)> = st
            .frameworks
            .iter()
            .map(|f| (f.framework.as_str(), f.deployments, f.succeeded, f.failed))
            .collect();
        assert_eq!(fw, [("flask", 3, 1, 1), ("django", 2, 1, 0)]);
        assert_eq!(st.frameworks[0].mean_deploy_ms, Some(36_000));
        assert_eq!(st.frameworks[1].mean_deploy_ms, Some(500));
    }

    #[test]
    fn days_follow_the_readers_offset() {
        let mut s = Store::open_in_memory().unwrap();
        // 23:30 UTC on the 14th is already the 15th at UTC+1.
        insert(
            &mut s,
            "late",
            "flask",
            Origin::Terraform,
            NOW - 12 * 3_600_000 - 1_800_000,
        );
        let utc = s.statistics(NOW, 2, 0).unwrap();
        assert_eq!(utc.per_day[0].deployments, 1);
        let east = s.statistics(NOW, 2, 3600).unwrap();
        assert_eq!(east.per_day[1].deployments, 1);
        assert_eq!(east.per_day[1].day, "2026-01-15");
    }
}
