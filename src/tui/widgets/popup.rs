//! Popups: bordered boxes centred over the screen, sized to their text: the error popup (one
//! message, wrapped), the confirmation (what is about to happen, naming the deployment) and
//! the help (every key of a screen). Render-only: which popup shows and what its keys do
//! belong to `App`.

use super::text::wrap;
use crate::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Padding, Paragraph, Widget};

/// Widest the popup grows, borders included; short messages get a narrower box.
const MAX_WIDTH: u16 = 72;

pub struct ErrorPopup<'a> {
    pub message: &'a str,
    /// How many more errors wait behind this one.
    pub more: usize,
    pub theme: &'a Theme,
}

impl Widget for ErrorPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        // Borders (2) and padding (2) on each axis' sides.
        let frame_w = 4u16;
        let max_text = MAX_WIDTH
            .min(area.width.saturating_sub(4))
            .saturating_sub(frame_w);
        if max_text < 8 || area.height < 5 {
            return;
        }
        let longest = self
            .message
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        let text_w = u16::try_from(longest)
            .unwrap_or(u16::MAX)
            .clamp(24.min(max_text), max_text);
        let lines = wrap(self.message, usize::from(text_w));
        let max_lines = usize::from(area.height.saturating_sub(4));
        let shown = lines.len().min(max_lines);
        let height = u16::try_from(shown).unwrap_or(u16::MAX) + 2;
        let popup = area.centered(
            Constraint::Length(text_w + frame_w),
            Constraint::Length(height),
        );

        let title = if self.more > 0 {
            format!(" Error (1 of {}) ", self.more + 1)
        } else {
            " Error ".to_string()
        };
        let block = Block::bordered()
            .border_style(self.theme.error_border())
            .title(Span::styled(title, self.theme.error_border()))
            .padding(Padding::horizontal(1));
        let text: Vec<Line> = lines.into_iter().take(shown).map(Line::from).collect();
        Clear.render(popup, buf);
        Paragraph::new(text).block(block).render(popup, buf);
    }
}

/// A yes/no question before something destructive.
pub struct ConfirmPopup<'a> {
    pub title: &'a str,
    pub lines: &'a [String],
    pub theme: &'a Theme,
}

impl Widget for ConfirmPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let max_text = MAX_WIDTH
            .min(area.width.saturating_sub(4))
            .saturating_sub(4);
        if max_text < 8 || area.height < 6 {
            return;
        }
        let longest = self
            .lines
            .iter()
            .map(|l| l.chars().count())
            .chain(std::iter::once(self.title.chars().count() + 2))
            .max()
            .unwrap_or(0);
        let text_w = u16::try_from(longest)
            .unwrap_or(u16::MAX)
            .clamp(30.min(max_text), max_text);
        let mut text: Vec<Line> = Vec::new();
        for l in self.lines {
            text.extend(wrap(l, usize::from(text_w)).into_iter().map(Line::from));
        }
        text.push(Line::from(""));
        text.push(Line::from(vec![
            Span::styled("y", self.theme.hint_key()),
            Span::raw(" yes   "),
            Span::styled("n", self.theme.hint_key()),
            Span::raw("/"),
            Span::styled("esc", self.theme.hint_key()),
            Span::raw(" no"),
        ]));
        let max_lines = usize::from(area.height.saturating_sub(2));
        text.truncate(max_lines);
        let height = u16::try_from(text.len()).unwrap_or(u16::MAX) + 2;
        let popup = area.centered(Constraint::Length(text_w + 4), Constraint::Length(height));
        let block = Block::bordered()
            .border_style(self.theme.error_border())
            .title(Span::styled(
                format!(" {} ", self.title),
                self.theme.error_border(),
            ))
            .padding(Padding::horizontal(1));
        Clear.render(popup, buf);
        Paragraph::new(text).block(block).render(popup, buf);
    }
}

/// Every key of one screen, from the keymap: `keys  what they do`.
pub struct HelpPopup<'a> {
    pub title: &'a str,
    pub rows: &'a [(String, &'static str)],
    /// Rows scrolled past.
    pub scroll: usize,
    pub theme: &'a Theme,
}

impl Widget for HelpPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < 20 || area.height < 5 {
            return;
        }
        let key_w = self
            .rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0)
            .min(28);
        let desc_w = self
            .rows
            .iter()
            .map(|(_, d)| d.chars().count())
            .max()
            .unwrap_or(0);
        let widest = area.width.saturating_sub(2).min(MAX_WIDTH);
        let width = u16::try_from(key_w + 2 + desc_w + 4)
            .unwrap_or(u16::MAX)
            .clamp(30.min(widest), widest);
        let inner_h = usize::from(area.height.saturating_sub(4));
        let shown = self.rows.len().min(inner_h);
        let height = u16::try_from(shown).unwrap_or(u16::MAX) + 2;
        let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
        let scroll = self.scroll.min(self.rows.len().saturating_sub(shown));
        let text: Vec<Line> = self
            .rows
            .iter()
            .skip(scroll)
            .take(shown)
            .map(|(keys, desc)| {
                Line::from(vec![
                    Span::styled(format!("{keys:<key_w$}"), self.theme.hint_key()),
                    Span::raw("  "),
                    Span::raw(*desc),
                ])
            })
            .collect();
        let more = if scroll + shown < self.rows.len() {
            " (j/k: more) "
        } else {
            ""
        };
        let block = Block::bordered()
            .border_style(self.theme.focused())
            .title(Span::styled(
                format!(" Keys: {} ", self.title),
                self.theme.title(),
            ))
            .title_bottom(Span::styled(more, self.theme.muted()))
            .padding(Padding::horizontal(1));
        Clear.render(popup, buf);
        Paragraph::new(text).block(block).render(popup, buf);
    }
}

/// A menu of choices, each with its key: what may be done to the selected row, or what the
/// table sorts by. The highlighted entry runs with enter, any entry with its key.
pub struct MenuPopup<'a> {
    pub title: &'a str,
    /// `(key, words, marked)`: `marked` shows a `•` (the current choice).
    pub items: &'a [(String, String, bool)],
    pub selected: usize,
    /// A line under the entries (why some actions are missing).
    pub note: Option<&'a str>,
    pub theme: &'a Theme,
}

impl Widget for MenuPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let key_w = self
            .items
            .iter()
            .map(|i| i.0.chars().count())
            .max()
            .unwrap_or(1);
        let note_lines = self
            .note
            .map(|n| wrap(n, usize::from(MAX_WIDTH - 4)))
            .unwrap_or_default();
        let longest = self
            .items
            .iter()
            .map(|i| key_w + 5 + i.1.chars().count())
            .chain(note_lines.iter().map(|l| l.chars().count()))
            .chain(std::iter::once(self.title.chars().count() + 2))
            .max()
            .unwrap_or(10);
        let width = u16::try_from(longest + 4)
            .unwrap_or(MAX_WIDTH)
            .min(MAX_WIDTH)
            .min(area.width);
        let extra = if note_lines.is_empty() {
            0
        } else {
            note_lines.len() + 1
        };
        let height = u16::try_from(self.items.len() + extra + 2)
            .unwrap_or(u16::MAX)
            .min(area.height);
        if width < 12 || height < 3 {
            return;
        }
        let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
        let block = Block::bordered()
            .border_style(self.theme.focused())
            .title(Span::styled(
                format!(" {} ", self.title),
                self.theme.title(),
            ))
            .padding(Padding::horizontal(1));
        let mut text: Vec<Line> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, (key, words, marked))| {
                let mark = if *marked { "•" } else { " " };
                let line = Line::from(vec![
                    Span::styled(format!("{key:<key_w$}"), self.theme.hint_key()),
                    Span::raw(format!(" {mark} {words}")),
                ]);
                if i == self.selected {
                    line.style(self.theme.selected())
                } else {
                    line
                }
            })
            .collect();
        if !note_lines.is_empty() {
            text.push(Line::default());
            text.extend(
                note_lines
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, self.theme.muted()))),
            );
        }
        Clear.render(popup, buf);
        Paragraph::new(text).block(block).render(popup, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_areas_draw_nothing_rather_than_garbage() {
        let area = Rect::new(0, 0, 10, 3);
        let mut buf = Buffer::empty(area);
        ErrorPopup {
            message: "boom",
            more: 0,
            theme: &Theme::plain(),
        }
        .render(area, &mut buf);
        assert_eq!(buf, Buffer::empty(area));
    }
}
