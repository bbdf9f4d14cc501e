//! Proxmox resources: every node (status, CPU, memory, disk, uptime) and every guest of the
//! cluster (status, usage, uptime, managed by proxdeck, imported, or unknown), from the
//! engine's `ClusterSnapshot`. Import (sync) and start/stop act through `App`, which owns the
//! confirmations and the requests.
//!
//! Owns which table has the focus and the selection in each (the guest kept by vmid across
//! refreshes). Must not do I/O.

use super::{Ctx, Intent};
use crate::protocol::{ClusterSnapshot, GuestInfo, Request};
use crate::tui::keys::Action;
use crate::tui::widgets::text::{SPINNER, format_bytes, wrap};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Nodes,
    Guests,
}

#[derive(Debug)]
pub struct ResourcesScreen {
    focus: Focus,
    node: usize,
    /// The selected guest's vmid.
    guest: Option<u32>,
    page: usize,
    loading: bool,
}

impl ResourcesScreen {
    pub fn open() -> (ResourcesScreen, Vec<Intent>) {
        (
            ResourcesScreen {
                focus: Focus::Guests,
                node: 0,
                guest: None,
                page: 10,
                loading: true,
            },
            vec![Intent::Send(Request::LoadResources)],
        )
    }

    pub fn busy(&self) -> bool {
        self.loading
    }

    pub fn loaded(&mut self) {
        self.loading = false;
    }

    pub fn refresh(&mut self, out: &mut Vec<Intent>) {
        self.loading = true;
        out.push(Intent::Send(Request::LoadResources));
    }

    /// The selected guest, when the guest table has the focus.
    pub fn selected_guest<'a>(
        &self,
        cluster: Option<&'a Result<ClusterSnapshot, String>>,
    ) -> Option<&'a GuestInfo> {
        if self.focus != Focus::Guests {
            return None;
        }
        let Some(Ok(c)) = cluster else { return None };
        match self.guest {
            Some(vmid) => c.guests.iter().find(|g| g.vmid == vmid),
            // Nothing chosen yet: the first row, as drawn.
            None => c.guests.first(),
        }
    }

    pub fn handle(
        &mut self,
        action: Action,
        cluster: Option<&Result<ClusterSnapshot, String>>,
        out: &mut Vec<Intent>,
    ) -> bool {
        let snapshot = match cluster {
            Some(Ok(c)) => Some(c),
            _ => None,
        };
        match action {
            Action::Back => out.push(Intent::Close),
            Action::Refresh => self.refresh(out),
            Action::SwitchTab => {
                self.focus = match self.focus {
                    Focus::Nodes => Focus::Guests,
                    Focus::Guests => Focus::Nodes,
                };
            }
            Action::Up
            | Action::Down
            | Action::Top
            | Action::Bottom
            | Action::PageUp
            | Action::PageDown => {
                let Some(c) = snapshot else { return false };
                let len = match self.focus {
                    Focus::Nodes => c.nodes.len(),
                    Focus::Guests => c.guests.len(),
                };
                let Some(last) = len.checked_sub(1) else {
                    return false;
                };
                let current = match self.focus {
                    Focus::Nodes => self.node.min(last),
                    Focus::Guests => self
                        .guest
                        .and_then(|v| c.guests.iter().position(|g| g.vmid == v))
                        .unwrap_or(0),
                };
                let target = match action {
                    Action::Up => current.saturating_sub(1),
                    Action::Down => (current + 1).min(last),
                    Action::Top => 0,
                    Action::Bottom => last,
                    Action::PageUp => current.saturating_sub(self.page),
                    _ => (current + self.page).min(last),
                };
                match self.focus {
                    Focus::Nodes => self.node = target,
                    Focus::Guests => self.guest = Some(c.guests[target].vmid),
                }
            }
            _ => return false,
        }
        true
    }

    pub fn render(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        cx: &Ctx,
        cluster: Option<&Result<ClusterSnapshot, String>>,
    ) {
        let theme = cx.theme;
        let c = match cluster {
            Some(Ok(c)) => c,
            other => {
                let text = match other {
                    Some(Err(e)) => format!("Proxmox could not be read: {e}\n\nr tries again."),
                    _ => format!(
                        "{} reading the cluster…",
                        SPINNER[cx.spinner % SPINNER.len()]
                    ),
                };
                let block = Block::bordered()
                    .border_style(theme.border())
                    .title(Span::styled(" Proxmox resources ", theme.title()));
                let inner = block.inner(area);
                frame.render_widget(block, area);
                let lines: Vec<Line> = wrap(&text, usize::from(inner.width))
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, theme.warning())))
                    .collect();
                frame.render_widget(Paragraph::new(lines), inner);
                return;
            }
        };
        if self
            .guest
            .is_none_or(|v| !c.guests.iter().any(|g| g.vmid == v))
        {
            self.guest = c.guests.first().map(|g| g.vmid);
        }
        self.node = self.node.min(c.nodes.len().saturating_sub(1));
        let node_rows = u16::try_from(c.nodes.len()).unwrap_or(u16::MAX).clamp(1, 6) + 3;
        let [nodes_area, guests_area] =
            Layout::vertical([Constraint::Length(node_rows), Constraint::Fill(1)]).areas(area);
        let wide = area.width >= 100;
        let spinner = if self.loading {
            format!(" {} ", SPINNER[cx.spinner % SPINNER.len()])
        } else {
            String::new()
        };

        let border = |focused: bool| {
            if focused {
                theme.focused()
            } else {
                theme.border()
            }
        };
        let header_nodes = Row::new(["NODE", "STATUS", "CPU", "MEMORY", "DISK", "UPTIME"])
            .style(theme.table_header());
        let rows = c.nodes.iter().map(|n| {
            Row::new(vec![
                Cell::from(n.name.clone()),
                Cell::from(Span::styled(
                    n.status.clone(),
                    if n.online { theme.ok() } else { theme.error() },
                )),
                Cell::from(format!("{:>3.0}% of {}", n.cpu * 100.0, n.maxcpu)),
                Cell::from(usage(n.mem, n.maxmem, wide)),
                Cell::from(usage(n.disk, n.maxdisk, wide)),
                Cell::from(uptime(n.uptime)),
            ])
        });
        let mem_w = if wide { 24 } else { 10 };
        let table = Table::new(
            rows,
            [
                Constraint::Fill(1),
                Constraint::Length(8),
                Constraint::Length(11),
                Constraint::Length(mem_w),
                Constraint::Length(mem_w),
                Constraint::Length(8),
            ],
        )
        .header(header_nodes)
        .block(
            Block::bordered()
                .border_style(border(self.focus == Focus::Nodes))
                .title(Span::styled(
                    format!(" Nodes ({}) ", c.nodes.len()),
                    theme.title(),
                ))
                .title(Span::styled(spinner.clone(), theme.spinner())),
        )
        .row_highlight_style(theme.selected())
        .highlight_spacing(HighlightSpacing::Always)
        .highlight_symbol("› ");
        let mut state = TableState::new().with_selected(
            (self.focus == Focus::Nodes && !c.nodes.is_empty()).then_some(self.node),
        );
        frame.render_stateful_widget(table, nodes_area, &mut state);

        self.page = usize::from(guests_area.height.saturating_sub(3)).max(1);
        let header = Row::new([
            "VMID", "NAME", "TYPE", "NODE", "STATUS", "CPU", "MEMORY", "UPTIME", "PROXDECK",
        ])
        .style(theme.table_header());
        let rows = c.guests.iter().map(|g| {
            let (who, style) = match (&g.entry, g.managed) {
                _ if g.orphan_of.is_some() => (
                    format!(
                        "orphan of {}: d removes vmid {}",
                        g.orphan_of.as_ref().map(|d| d.0.as_str()).unwrap_or("?"),
                        g.vmid
                    ),
                    theme.warning(),
                ),
                (Some(e), true) => (e.name.clone(), theme.ok()),
                (Some(e), false) => (format!("{} (imported)", e.name), theme.info()),
                (None, _) if g.template => ("template".to_string(), theme.muted()),
                (None, _) => ("-".to_string(), theme.muted()),
            };
            Row::new(vec![
                Cell::from(g.vmid.to_string()),
                Cell::from(g.name.clone()),
                Cell::from(g.kind.as_str()),
                Cell::from(g.node.clone()),
                Cell::from(Span::styled(
                    g.status.clone(),
                    if g.status == "running" {
                        theme.ok()
                    } else {
                        theme.muted()
                    },
                )),
                Cell::from(format!("{:>3.0}%", g.cpu * 100.0)),
                Cell::from(usage(g.mem, g.maxmem, wide)),
                Cell::from(uptime(g.uptime)),
                Cell::from(Span::styled(who, style)),
            ])
        });
        let managed = c.guests.iter().filter(|g| g.managed).count();
        let imported = c
            .guests
            .iter()
            .filter(|g| g.entry.is_some() && !g.managed)
            .count();
        let table = Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Fill(1),
                Constraint::Length(4),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(4),
                Constraint::Length(mem_w),
                Constraint::Length(8),
                Constraint::Fill(1),
            ],
        )
        .header(header)
        .block(
            Block::bordered()
                .border_style(border(self.focus == Focus::Guests))
                .title(Span::styled(
                    format!(
                        " Guests ({}: {managed} managed, {imported} imported) ",
                        c.guests.len()
                    ),
                    theme.title(),
                )),
        )
        .row_highlight_style(theme.selected())
        .highlight_spacing(HighlightSpacing::Always)
        .highlight_symbol("› ");
        let selected = self
            .guest
            .and_then(|v| c.guests.iter().position(|g| g.vmid == v))
            .filter(|_| self.focus == Focus::Guests);
        let mut state = TableState::new().with_selected(selected);
        frame.render_stateful_widget(table, guests_area, &mut state);
    }
}

/// `45%` (narrow) or `45% 3.6 GiB/8.0 GiB` (wide).
fn usage(used: u64, max: u64, wide: bool) -> String {
    let pct = if max == 0 {
        0.0
    } else {
        used as f64 * 100.0 / max as f64
    };
    if wide {
        format!("{pct:>3.0}% {}/{}", short(used), short(max))
    } else {
        format!("{pct:>3.0}% {}", short(max))
    }
}

fn short(bytes: u64) -> String {
    format_bytes(bytes).replace(".0 ", " ").replace("iB", "")
}

/// `3d04h`, `5h12m`, `7m`, or `-` when stopped.
fn uptime(secs: u64) -> String {
    match secs {
        0 => "-".into(),
        s if s >= 86_400 => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
        s if s >= 3_600 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        s => format!("{}m", s / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GuestType;

    fn guest(vmid: u32) -> GuestInfo {
        GuestInfo {
            vmid,
            kind: GuestType::Lxc,
            node: "pve1".into(),
            name: format!("g{vmid}"),
            status: "running".into(),
            cpu: 0.0,
            maxcpu: 1,
            mem: 0,
            maxmem: 1,
            disk: 0,
            maxdisk: 1,
            uptime: 0,
            template: false,
            managed: false,
            orphan_of: None,
            entry: None,
        }
    }

    #[test]
    fn the_selected_guest_is_kept_by_vmid() {
        let (mut s, intents) = ResourcesScreen::open();
        assert_eq!(intents, [Intent::Send(Request::LoadResources)]);
        let c: Result<ClusterSnapshot, String> = Ok(ClusterSnapshot {
            nodes: vec![],
            guests: vec![guest(100), guest(101), guest(102)],
        });
        let mut out = Vec::new();
        s.guest = Some(100);
        s.handle(Action::Down, Some(&c), &mut out);
        assert_eq!(s.selected_guest(Some(&c)).map(|g| g.vmid), Some(101));
        // A refresh with a new guest in front keeps 101 selected.
        let c2: Result<ClusterSnapshot, String> = Ok(ClusterSnapshot {
            nodes: vec![],
            guests: vec![guest(99), guest(100), guest(101)],
        });
        assert_eq!(s.selected_guest(Some(&c2)).map(|g| g.vmid), Some(101));
        s.handle(Action::SwitchTab, Some(&c2), &mut out);
        assert_eq!(s.selected_guest(Some(&c2)), None, "nodes have the focus");
        assert!(s.handle(Action::Refresh, Some(&c2), &mut out));
        assert_eq!(out, [Intent::Send(Request::LoadResources)]);
        assert!(s.busy());
    }

    #[test]
    fn sizes_and_uptimes_are_short() {
        assert_eq!(uptime(0), "-");
        assert_eq!(uptime(90_061), "1d01h");
        assert_eq!(uptime(4_000), "1h06m");
        assert_eq!(
            usage(512 * 1024 * 1024, 1024 * 1024 * 1024, false),
            " 50% 1 G"
        );
        assert_eq!(usage(1, 0, true), "  0% 1 B/0 B");
    }
}
