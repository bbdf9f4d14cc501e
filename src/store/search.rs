//! Narrow reads for the front ends at scale: the log pane's filter over a whole deployment log
//! (every line containing a term, counted, with the last few kept), and the deployments in
//! flight (what recovery looks at when the data dir is opened) without reading every row.
//!
//! The filter is built on the store's public log reads (`Store::logs`, by sequence number), so
//! it works whatever the lines' storage is; bounded in memory however long the log (a page at a
//! time, at most `keep` lines held). Must not know how lines are stored, nor write anything.

use super::{DEPLOYMENT_COLUMNS, Result, Store, row_to_deployment};
use crate::domain::{Deployment, DeploymentId};
use crate::protocol::LogLine;
use std::collections::VecDeque;

/// Lines read from the store per call while scanning.
const SCAN_PAGE: usize = 10_000;

/// What a filter over a whole log found.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFilter {
    /// Lines containing the term in the whole log.
    pub total: u64,
    /// The last of them (at most the `keep` asked for), oldest first, with their sequence
    /// numbers.
    pub lines: Vec<(i64, LogLine)>,
    /// The sequence number of the last line scanned (0 for an empty log): lines after it are
    /// new since the scan.
    pub through: i64,
}

/// Whether `text` contains `query`, ASCII case-insensitively (as `Store::find_log` and the log
/// pane's highlight match).
pub fn contains_ignoring_case(text: &str, query: &str) -> bool {
    let (hay, needle) = (text.as_bytes(), query.as_bytes());
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl LogFilter {
    /// An empty result, before the scan.
    pub fn new() -> LogFilter {
        LogFilter {
            total: 0,
            lines: Vec::new(),
            through: 0,
        }
    }

    /// Scans the next page of `id`'s log (after `through`) for `query`, keeping the last `keep`
    /// matches. Returns whether there is more to scan: a caller may let go of the store
    /// between pages, so a long scan does not hold it.
    pub fn scan_page(
        &mut self,
        store: &Store,
        id: &DeploymentId,
        query: &str,
        keep: usize,
    ) -> Result<bool> {
        let page = store.logs(id, self.through, SCAN_PAGE)?;
        let more = page.len() == SCAN_PAGE;
        let mut kept: VecDeque<(i64, LogLine)> = std::mem::take(&mut self.lines).into();
        for (seq, line) in page {
            self.through = seq;
            if contains_ignoring_case(&line.text, query) {
                self.total += 1;
                if keep > 0 {
                    if kept.len() == keep {
                        kept.pop_front();
                    }
                    kept.push_back((seq, line));
                }
            }
        }
        self.lines = kept.into();
        Ok(more)
    }
}

impl Default for LogFilter {
    fn default() -> LogFilter {
        LogFilter::new()
    }
}

impl Store {
    /// The deployments in flight (PROVISIONING, DEPLOYING, DESTROYING), newest first: the
    /// others are not read.
    pub fn in_flight(&self) -> Result<Vec<Deployment>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
             WHERE status IN ('PROVISIONING', 'DEPLOYING', 'DESTROYING') \
             ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt
            .query_map([], row_to_deployment)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .filter(|d| d.as_ref().map_or(true, |d| d.status.is_in_flight()))
            .collect()
    }

    /// The newest `limit` deployments (as `list` orders them) and how many there are in all.
    pub fn newest(&self, limit: usize) -> Result<(Vec<Deployment>, u64)> {
        let total: i64 = self
            .conn
            .query_row("SELECT count(*) FROM deployments", [], |r| r.get(0))?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY created_at DESC, id LIMIT ?1"
        ))?;
        let rows = stmt
            .query_map([limit as i64], row_to_deployment)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let list = rows.into_iter().collect::<Result<Vec<_>>>()?;
        Ok((list, u64::try_from(total).unwrap_or(0)))
    }

    /// Every line of `id`'s log that contains `query` (ASCII case-insensitively): how many,
    /// and the last `keep` of them.
    pub fn filter_log(&self, id: &DeploymentId, query: &str, keep: usize) -> Result<LogFilter> {
        let mut found = LogFilter::new();
        while found.scan_page(self, id, query, keep)? {}
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;
    use crate::protocol::LogStream;

    #[test]
    fn in_flight_reads_only_deployments_in_flight() {
        let mut s = Store::open_in_memory().expect("store");
        for (id, status) in [
            ("run001", Status::Running),
            ("pro001", Status::Provisioning),
            ("dep001", Status::Deploying),
            ("des001", Status::Destroying),
            ("fai001", Status::Failed),
        ] {
            s.insert_deployment(&Deployment {
                id: DeploymentId(id.into()),
                name: id.into(),
                status,
                ..Deployment::default()
            })
            .expect("inserted");
        }
        let mut ids: Vec<String> = s
            .in_flight()
            .expect("read")
            .into_iter()
            .map(|d| d.id.0)
            .collect();
        ids.sort();
        assert_eq!(ids, ["dep001", "des001", "pro001"]);
        let all: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .filter(|d| d.status.is_in_flight())
            .map(|d| d.id.0)
            .collect();
        assert_eq!(all.len(), 3, "the same set as filtering the whole list");
        let (head, total) = s.newest(2).expect("newest");
        assert_eq!(total, 5);
        let first: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .map(|d| d.id.0)
            .collect();
        assert_eq!(
            head.into_iter().map(|d| d.id.0).collect::<Vec<_>>(),
            first[..2],
            "the first rows of the list"
        );
    }

    fn line(text: String) -> LogLine {
        LogLine {
            at: 0,
            stream: LogStream::Stdout,
            stage: None,
            text,
        }
    }

    #[test]
    fn counts_every_match_of_a_long_log_and_keeps_the_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Store::open(&dir.path().join("proxdeck.db")).expect("store");
        for id in ["aaa111", "bbb222"] {
            s.insert_deployment(&Deployment {
                id: DeploymentId(id.into()),
                name: id.into(),
                ..Deployment::default()
            })
            .expect("inserted");
        }
        let (a, b) = (DeploymentId("aaa111".into()), DeploymentId("bbb222".into()));
        // More than a scan page, so the scan goes on past its first read; every 7th line is a
        // warning, in mixed case.
        let lines: Vec<LogLine> = (1..=25_000)
            .map(|i| {
                line(if i % 7 == 0 {
                    format!("line {i}: WARNING disk")
                } else {
                    format!("line {i}: ok")
                })
            })
            .collect();
        s.append_logs(&a, &lines).expect("appended");
        s.append_logs(&b, &[line("warning elsewhere".into())])
            .expect("appended");

        let found = s.filter_log(&a, "warning", 100).expect("filtered");
        assert_eq!(found.total, 25_000 / 7, "the whole log, not a window");
        assert_eq!(found.lines.len(), 100);
        assert!(found.lines.iter().all(|(_, l)| l.text.contains("WARNING")));
        assert_eq!(
            found.lines.last().map(|(_, l)| l.text.as_str()),
            Some("line 24997: WARNING disk"),
            "the newest match is kept"
        );
        assert!(found.lines.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        let last_seq = s.logs_tail(&a, 1).expect("tail")[0].0;
        assert_eq!(found.through, last_seq);

        let none = s
            .filter_log(&a, "nothing like this", 100)
            .expect("filtered");
        assert_eq!((none.total, none.lines.len()), (0, 0));
        let empty = s
            .filter_log(&DeploymentId("zzz999".into()), "warning", 100)
            .expect("filtered");
        assert_eq!((empty.total, empty.through), (0, 0));
    }

    #[test]
    fn matching_ignores_ascii_case() {
        assert!(contains_ignoring_case("Error: BOOM", "boom"));
        assert!(contains_ignoring_case("anything", ""));
        assert!(!contains_ignoring_case("ok", "okay"));
    }
}
