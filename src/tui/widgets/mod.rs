//! Reusable, render-only pieces shared by screens. Each is a small struct built per frame that
//! borrows what it shows; none holds state between frames or knows about the engine.

pub mod field;
pub mod hint_bar;
pub mod popup;
pub mod text;

pub use field::Field;
pub use hint_bar::HintBar;
pub use popup::{ConfirmPopup, ErrorPopup, HelpPopup, MenuPopup};
