//! Analysis: pure functions over collected samples and windows. No I/O, no clock.
//!
//! [`ordering`] audits ordered processing; [`tick`] finds the frame period actually present in
//! the ack times.

pub mod causes;
pub mod ordering;
pub mod spikes;
pub mod tick;
