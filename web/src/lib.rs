//! The web console's pure layer: request data in, view model, rendered HTML out.
//!
//! # Layout
//!
//! - [`auth`]: passwords, TOTP, recovery codes, sessions, CSRF, lockout, headers.
//! - [`diagram`]: the workflow diagram as SVG, current steps highlighted.
//! - [`form`]: form fields from JSON Schema and the parse of submitted forms.
//! - [`i18n`]: one message catalogue per locale and locale negotiation.
//! - [`render`]: typed view models and the pages rendered from them.
//!
//! **Architecture invariant:** this crate performs no IO. It never reads the store or
//! the clock; routes in the daemon call the runtime, build view models and call the
//! render functions here.

pub mod auth;
pub mod diagram;
pub mod form;
pub mod i18n;
pub mod render;
mod shipped;

pub use i18n::Locale;
pub use render::{Frame, WebError};
