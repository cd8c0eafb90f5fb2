//! snapshot-diff: does a converted model still give the original's answers?
//!
//! Both models run in `rbe-runtime` on the same inputs (saved tensors, token windows of a
//! text, or seeded random token sequences); every output is compared with the metrics of
//! MEASURING.md ([`metrics`]), judged against limits ([`thresholds`]) and golden snapshots
//! ([`golden`]), and shown as a table, JSON or an HTML page ([`html`]).

pub mod compare;
pub mod golden;
pub mod html;
pub mod inputs;
pub mod metrics;
pub mod rate;
pub mod rd_plot;
pub mod report;
pub mod run;
pub mod text;
pub mod thresholds;

pub use report::Report;
pub use run::{run, Job, Source};
