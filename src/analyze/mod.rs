//! Analysis: pure functions over collected samples and windows. No I/O, no clock.
//!
//! [`spikes`] finds P99 spikes in windowed P99s; [`causes`] attributes a spike to its causes;
//! [`report`] puts the two together over the collector's windows and samples; [`ordering`]
//! audits ordered processing; [`incidents`] groups spikes that begin together; [`alerts`]
//! turns rules over all of these into alerts that fire and resolve. Phases come in each consumer's own frame ([`crate::clocks`]).

pub mod alerts;
pub mod causes;
pub mod config;
pub mod incidents;
pub mod ordering;
pub mod report;
pub mod spikes;
