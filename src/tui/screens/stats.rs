//! Statistics: totals and the success rate (a gauge), deployments per day (a bar chart), time
//! per stage (a horizontal bar chart) and the per-framework breakdown, drawn with ratatui's
//! charts from the engine's `Statistics` (imported entries are not deployments and are not in
//! them). Render-only apart from asking for a refresh.

use super::{Ctx, Intent};
use crate::protocol::{Request, Statistics};
use crate::tui::keys::Action;
use crate::tui::widgets::text::format_duration;
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Cell, Gauge, Paragraph, Row, Table};

#[derive(Debug, Default)]
pub struct StatsScreen;

impl StatsScreen {
    pub fn open() -> (StatsScreen, Vec<Intent>) {
        (StatsScreen, vec![Intent::Send(Request::LoadStats)])
    }

    pub fn handle(&mut self, action: Action, out: &mut Vec<Intent>) -> bool {
        match action {
            Action::Back => out.push(Intent::Close),
            Action::Refresh => out.push(Intent::Send(Request::LoadStats)),
            _ => return false,
        }
        true
    }

    pub fn render(&self, frame: &mut Frame, area: Rect, cx: &Ctx, stats: Option<&Statistics>) {
        let theme = cx.theme;
        let Some(s) = stats else {
            frame.render_widget(
                Paragraph::new(Span::styled(" reading the statistics…", theme.muted())),
                area,
            );
            return;
        };
        let [top, days, bottom] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Percentage(45),
            Constraint::Fill(1),
        ])
        .areas(area);

        // Totals and the success rate.
        let [totals, gauge] =
            Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(top);
        let text = vec![
            Line::from(vec![
                Span::styled(format!(" {} ", s.total), theme.title()),
                Span::raw("deployments  "),
                Span::styled(format!("{} ", s.active), theme.title()),
                Span::raw("active  "),
                Span::styled(format!("{} ", s.in_flight), theme.title()),
                Span::raw("in flight"),
            ]),
            Line::from(vec![
                Span::styled(format!(" {} ", s.succeeded), theme.ok()),
                Span::raw("reached RUNNING  "),
                Span::styled(format!("{} ", s.failed), theme.error()),
                Span::raw("failed without"),
            ]),
            Line::from(Span::styled(
                " (guests imported by sync are not counted)",
                theme.muted(),
            )),
        ];
        frame.render_widget(Paragraph::new(text), totals);
        let (ratio, label) = match s.success_rate {
            Some(r) => (r, format!("{:.0}% succeeded", r * 100.0)),
            None => (0.0, "no verdict yet".to_string()),
        };
        frame.render_widget(
            Gauge::default()
                .block(
                    Block::bordered()
                        .border_style(theme.border())
                        .title(" Success rate "),
                )
                .gauge_style(theme.gauge())
                .ratio(ratio.clamp(0.0, 1.0))
                .label(label),
            gauge,
        );

        // Deployments per day: as many of the last days as fit, one bar each.
        let block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(" Deployments per day ", theme.title()))
            .title(Span::styled(" failed ones in red ", theme.muted()));
        let inner_w = usize::from(days.width.saturating_sub(2));
        let bar_w: u16 = 4;
        let fit = (inner_w / usize::from(bar_w + 1)).max(1);
        let shown = &s.per_day[s.per_day.len().saturating_sub(fit)..];
        let bars: Vec<Bar> = shown
            .iter()
            .map(|d| {
                // The day of the month: the chart reads left to right, oldest first.
                let label = d.day.get(8..).unwrap_or(&d.day).to_string();
                let style = if d.failed > 0 {
                    theme.bar_failed()
                } else {
                    theme.bar()
                };
                Bar::default()
                    .value(d.deployments)
                    .label(Line::from(label))
                    .text_value(d.deployments.to_string())
                    .style(style)
            })
            .collect();
        frame.render_widget(
            BarChart::default()
                .block(block)
                .bar_width(bar_w)
                .bar_gap(1)
                .data(BarGroup::default().bars(&bars)),
            days,
        );

        // Time per stage and the per-framework breakdown.
        let [stages, frameworks] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(bottom);
        let stage_bars: Vec<Bar> = s
            .stages
            .iter()
            .map(|t| {
                Bar::default()
                    .value(u64::try_from(t.mean_ms).unwrap_or(0))
                    .label(Line::from(t.stage.as_str()))
                    .text_value(format!("{} ×{}", format_duration(t.mean_ms), t.runs))
                    .style(theme.bar())
            })
            .collect();
        let stage_block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(" Mean time per stage ", theme.title()));
        if stage_bars.is_empty() {
            let inner = stage_block.inner(stages);
            frame.render_widget(stage_block, stages);
            frame.render_widget(
                Paragraph::new(Span::styled("no stage has finished yet", theme.muted())),
                inner,
            );
        } else {
            frame.render_widget(
                BarChart::default()
                    .block(stage_block)
                    .direction(Direction::Horizontal)
                    .bar_width(1)
                    .bar_gap(0)
                    .data(BarGroup::default().bars(&stage_bars)),
                stages,
            );
        }
        let rows = s.frameworks.iter().map(|f| {
            let decided = f.succeeded + f.failed;
            let rate = if decided == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", f.succeeded as f64 * 100.0 / decided as f64)
            };
            Row::new(vec![
                Cell::from(f.framework.clone()),
                Cell::from(f.deployments.to_string()),
                Cell::from(f.active.to_string()),
                Cell::from(rate),
                Cell::from(f.mean_deploy_ms.map_or("-".into(), format_duration)),
            ])
        });
        frame.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Fill(1),
                    Constraint::Length(5),
                    Constraint::Length(6),
                    Constraint::Length(5),
                    Constraint::Length(8),
                ],
            )
            .header(
                Row::new(["FRAMEWORK", "ALL", "ACTIVE", "OK", "TO RUN"])
                    .style(theme.table_header()),
            )
            .block(
                Block::bordered()
                    .border_style(theme.border())
                    .title(Span::styled(" Per framework ", theme.title())),
            ),
            frameworks,
        );
    }
}
