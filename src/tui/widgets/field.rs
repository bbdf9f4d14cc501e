//! A labelled one-line text field drawn from a `tui_input::Input`: the label, the value (or a
//! greyed-out suggestion when empty, or dots when masked), the error under it, and the cursor
//! placed when the field has the keyboard. Render-only: the `Input` is edited by its owner.

use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tui_input::Input;

/// Width of the label column, so the values of a form line up.
pub const LABEL_WIDTH: u16 = 12;

pub struct Field<'a> {
    pub label: &'a str,
    pub input: &'a Input,
    pub placeholder: &'a str,
    pub focused: bool,
    /// Secrets are drawn as dots.
    pub masked: bool,
    pub error: Option<&'a str>,
    pub theme: &'a Theme,
}

impl Field<'_> {
    /// Rows the field takes: its line, plus one for the error.
    pub fn height(&self) -> u16 {
        1 + u16::from(self.error.is_some())
    }

    pub fn render(&self, frame: &mut Frame, area: Rect) {
        if area.height == 0 || area.width <= LABEL_WIDTH + 2 {
            return;
        }
        let theme = self.theme;
        let marker = if self.focused { "› " } else { "  " };
        let label_style = if self.focused {
            theme.focused()
        } else {
            theme.table_header()
        };
        let value_width = usize::from(area.width - LABEL_WIDTH - 2);
        let value = self.input.value();
        let scroll = self.input.visual_scroll(value_width.saturating_sub(1));
        let shown: String = if self.masked {
            "•".repeat(value.chars().count())
        } else {
            value.to_string()
        };
        let shown: String = shown.chars().skip(scroll).take(value_width).collect();
        let mut spans = vec![
            Span::styled(marker, theme.focused()),
            Span::styled(
                format!("{:<w$}", self.label, w = usize::from(LABEL_WIDTH)),
                label_style,
            ),
        ];
        if value.is_empty() {
            let hint: String = self.placeholder.chars().take(value_width).collect();
            spans.push(Span::styled(hint, theme.placeholder()));
        } else {
            spans.push(Span::raw(shown));
        }
        let line_area = Rect { height: 1, ..area };
        frame.render_widget(Paragraph::new(Line::from(spans)), line_area);
        if let Some(error) = self.error
            && area.height > 1
        {
            let text: String = error.chars().take(value_width).collect();
            let error_area = Rect {
                y: area.y + 1,
                height: 1,
                ..area
            };
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::raw(" ".repeat(usize::from(LABEL_WIDTH) + 2)),
                    Span::styled(text, theme.error()),
                ])),
                error_area,
            );
        }
        if self.focused {
            let cursor = self.input.visual_cursor().saturating_sub(scroll);
            let x = area.x + LABEL_WIDTH + 2 + u16::try_from(cursor).unwrap_or(0);
            frame.set_cursor_position(Position::new(x.min(area.right() - 1), area.y));
        }
    }
}
