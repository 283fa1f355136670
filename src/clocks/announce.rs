//! Announced frame clocks: a game server publishes its frame clock as JSON on
//! `<prefix>.<stream>.<consumer>` (prefix `ackscope.frame` by default; a fourth token names the
//! consumer's JetStream domain):
//!
//! ```json
//! {"period_ns": 16666666.667, "epoch_ns": 1790000000123456789}
//! ```
//!
//! `"hz": 60` may stand in for `period_ns` (exactly 1/60 s). `epoch_ns` is the Unix time of any
//! frame start, a whole number. Parsing only: what is wrong is an [`Error`] naming it, never a
//! panic.

use serde::Deserialize;

use crate::tick::{Frame, Period};

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("subject is not <prefix>.<stream>.<consumer>[.<domain>]")]
    Subject,
    #[error("payload is not a frame clock: {0}")]
    Payload(String),
    #[error("give one of period_ns and hz")]
    PeriodOrHz,
    #[error("period out of range: {0}")]
    Period(String),
}

/// Whom an announcement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    pub domain: Option<&'a str>,
}

/// The stream, consumer and domain an announcement's subject names, below `prefix`.
pub fn parse_subject<'a>(prefix: &str, subject: &'a str) -> Result<Target<'a>, Error> {
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(Error::Subject)?;
    let mut tokens = rest.split('.');
    let (Some(stream), Some(consumer)) = (tokens.next(), tokens.next()) else {
        return Err(Error::Subject);
    };
    let domain = tokens.next();
    if tokens.next().is_some()
        || stream.is_empty()
        || consumer.is_empty()
        || domain.is_some_and(str::is_empty)
    {
        return Err(Error::Subject);
    }
    Ok(Target {
        stream,
        consumer,
        domain,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    period_ns: Option<f64>,
    hz: Option<f64>,
    epoch_ns: i64,
}

/// The frame clock an announcement's payload gives.
pub fn parse_payload(payload: &[u8]) -> Result<Frame, Error> {
    let a: Announcement = serde_json::from_slice(payload).map_err(|e| {
        let mut text = e.to_string();
        text.truncate(120);
        Error::Payload(text)
    })?;
    let period = match (a.period_ns, a.hz) {
        (Some(ns), None) => Period::from_ns_f64(ns),
        (None, Some(hz)) => Period::from_hz(hz),
        _ => return Err(Error::PeriodOrHz),
    }
    .ok_or_else(|| Error::Period(format!("{:?}", a.period_ns.or(a.hz))))?;
    Frame::new(period, a.epoch_ns).map_err(|e| Error::Period(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subjects_name_the_consumer_and_maybe_its_domain() {
        let t = parse_subject("ackscope.frame", "ackscope.frame.GAME.srv-1").unwrap();
        assert_eq!((t.stream, t.consumer, t.domain), ("GAME", "srv-1", None));
        let t = parse_subject("ackscope.frame", "ackscope.frame.GAME.srv-1.hub").unwrap();
        assert_eq!(t.domain, Some("hub"));
        for bad in [
            "ackscope.frame",
            "ackscope.frame.GAME",
            "ackscope.frameGAME.srv-1",
            "ackscope.frame.GAME.srv-1.hub.x",
            "ackscope.frame..srv-1",
            "other.GAME.srv-1",
        ] {
            assert_eq!(
                parse_subject("ackscope.frame", bad),
                Err(Error::Subject),
                "{bad}"
            );
        }
    }

    #[test]
    fn payloads_give_a_period_or_a_frequency() {
        let f = parse_payload(br#"{"hz": 60, "epoch_ns": 1790000000000000007}"#).unwrap();
        assert_eq!(f.period, Period::parse("60hz").unwrap());
        assert_eq!(f.epoch_ns, 1_790_000_000_000_000_007);
        let f = parse_payload(br#"{"period_ns": 16666666.667, "epoch_ns": 5}"#).unwrap();
        assert_eq!(f.period, Period::parse("16666666.667ns").unwrap());
        for (bad, why) in [
            (&b"{}"[..], "missing"),
            (br#"{"hz": 60}"#, "no epoch"),
            (br#"{"epoch_ns": 1}"#, "no period"),
            (br#"{"hz": 60, "period_ns": 1e7, "epoch_ns": 1}"#, "both"),
            (br#"{"hz": 0, "epoch_ns": 1}"#, "zero"),
            (br#"{"hz": 1e9, "epoch_ns": 1}"#, "too fast"),
            (br#"{"period_ns": -3, "epoch_ns": 1}"#, "negative"),
            (br#"{"hz": 60, "epoch_ns": 1.5e18}"#, "float epoch"),
            (br#"{"hz": 60, "epoch_ns": 1, "x": 1}"#, "unknown field"),
            (b"\xff\x00", "bytes"),
        ] {
            assert!(parse_payload(bad).is_err(), "{why}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_payload(&bytes);
        }
    }
}
