//! The settings of each consumer's frame clock, beside it: `[clocks]` as the file writes it
//! and as the stage runs on it.

use serde::Deserialize;

use super::infer::InferConfig;
use crate::units::{Dur, Invalid};

/// `[clocks]`: announced and inferred frame clocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClocks {
    /// Listen for frame clocks announced on `<subject_prefix>.<stream>.<consumer>`.
    pub announced: bool,
    /// Default `"ackscope.frame"`.
    pub subject_prefix: String,
    /// Infer the clock of each consumer that announces none from its own acks.
    pub infer: bool,
    /// How often inference folds the acks since its last pass, default `"5s"`.
    pub infer_every: Dur,
    /// Fewest acks a pass folds, default 300 (fewer wait for the next pass).
    pub min_acks: usize,
    /// The phase an inferred clock gives the point where a frame's acks resume after its quiet
    /// stretch: 0 by default; the game's logic time before it handles messages, if known.
    pub acks_resume_at: Dur,
    /// A frame shape that no rotation of the learned one fits for this long is learned anew,
    /// default `"60s"`.
    pub relearn_after: Dur,
}

impl Default for RawClocks {
    fn default() -> Self {
        Self {
            announced: true,
            subject_prefix: "ackscope.frame".into(),
            infer: true,
            infer_every: Dur::from_millis(5_000),
            min_acks: 300,
            acks_resume_at: Dur::from_millis(0),
            relearn_after: Dur::from_millis(60_000),
        }
    }
}

/// Clock settings after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClocksConfig {
    pub announced: bool,
    pub subject_prefix: String,
    pub infer: bool,
    pub infer_every_ns: u64,
    pub inference: InferConfig,
}

impl Default for ClocksConfig {
    fn default() -> Self {
        RawClocks::default()
            .validate()
            .expect("the default settings are valid")
    }
}

impl RawClocks {
    /// Checks every value of `[clocks]`; keys are named within the section.
    pub fn validate(self) -> Result<ClocksConfig, Invalid> {
        let prefix = &self.subject_prefix;
        let token_ok =
            |t: &str| !t.is_empty() && !t.contains(['*', '>', ' ', '\t', '\r', '\n']) && t != "$JS";
        if !prefix.split('.').all(token_ok) || prefix.starts_with("$JS.") || prefix.len() > 200 {
            return Err(Invalid::new(
                "subject_prefix",
                prefix,
                "must be a plain subject (tokens without wildcards, not under $JS)",
            ));
        }
        let every = self.infer_every.ns();
        if !(100_000_000..=600_000_000_000).contains(&every) {
            return Err(Invalid::new(
                "infer_every",
                self.infer_every.to_string(),
                "must be between 100ms and 10m",
            ));
        }
        if !(2..=1_000_000).contains(&self.min_acks) {
            return Err(Invalid::new(
                "min_acks",
                self.min_acks.to_string(),
                "must be between 2 and 1000000",
            ));
        }
        if self.acks_resume_at.ns() > 10_000_000_000 {
            return Err(Invalid::new(
                "acks_resume_at",
                self.acks_resume_at.to_string(),
                "must be at most 10s (a frame)",
            ));
        }
        if self.relearn_after.ns() < every {
            return Err(Invalid::new(
                "relearn_after",
                self.relearn_after.to_string(),
                "must be at least infer_every",
            ));
        }
        Ok(ClocksConfig {
            announced: self.announced,
            subject_prefix: self.subject_prefix,
            infer: self.infer,
            infer_every_ns: every,
            inference: InferConfig {
                min_acks: self.min_acks,
                acks_resume_at_ns: self.acks_resume_at.ns(),
                relearn_after_ns: self.relearn_after.ns(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_clock_settings_name_their_key() {
        let bad = |f: fn(&mut RawClocks)| {
            let mut raw = RawClocks::default();
            f(&mut raw);
            raw.validate().unwrap_err().key
        };
        assert_eq!(
            bad(|r| r.subject_prefix = "ackscope.*".into()),
            "subject_prefix"
        );
        assert_eq!(
            bad(|r| r.subject_prefix = "$JS.frame".into()),
            "subject_prefix"
        );
        assert_eq!(bad(|r| r.subject_prefix = "a..b".into()), "subject_prefix");
        assert_eq!(bad(|r| r.infer_every = Dur::from_millis(1)), "infer_every");
        assert_eq!(bad(|r| r.min_acks = 0), "min_acks");
        assert_eq!(
            bad(|r| r.relearn_after = Dur::from_millis(1_000)),
            "relearn_after"
        );
        assert!(RawClocks::default().validate().is_ok());
    }
}
