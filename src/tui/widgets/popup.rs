//! The error popup: a bordered box centred over the screen that shows one message, wrapped,
//! sized to its text. Render-only: which error shows and how it is dismissed belong to `App`.

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
            .clamp(24, max_text);
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
