//! The advisory tap: consumer advisories on `$JS.EVENT.ADVISORY.CONSUMER.>`, classified and
//! counted per consumer. The consumer comes from the subject; payloads are not needed.

/// Subjects of consumer advisories.
pub const ADVISORY_SUBJECT: &str = "$JS.EVENT.ADVISORY.CONSUMER.>";

/// The advisories ackscope counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryKind {
    MaxDeliveries,
    MsgNaked,
    MsgTerminated,
    LeaderElected,
    /// Any other consumer advisory (created, deleted, …).
    Other,
}

/// A classified advisory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advisory<'a> {
    pub kind: AdvisoryKind,
    pub stream: &'a str,
    pub consumer: &'a str,
}

/// Parses `$JS.EVENT.ADVISORY.CONSUMER.<KIND>.<stream>.<consumer>`; `None` if it is not one.
pub fn parse_advisory_subject(subject: &str) -> Option<Advisory<'_>> {
    let rest = subject.strip_prefix("$JS.EVENT.ADVISORY.CONSUMER.")?;
    let mut tokens = rest.split('.');
    let (kind, stream, consumer) = (tokens.next()?, tokens.next()?, tokens.next()?);
    if tokens.next().is_some() || stream.is_empty() || consumer.is_empty() {
        return None;
    }
    let kind = match kind {
        "MAX_DELIVERIES" => AdvisoryKind::MaxDeliveries,
        "MSG_NAKED" => AdvisoryKind::MsgNaked,
        "MSG_TERMINATED" => AdvisoryKind::MsgTerminated,
        "LEADER_ELECTED" => AdvisoryKind::LeaderElected,
        _ => AdvisoryKind::Other,
    };
    Some(Advisory {
        kind,
        stream,
        consumer,
    })
}

/// The JetStream domain an advisory's payload names, if any (unreadable payloads name none).
pub fn advisory_domain(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        domain: Option<String>,
    }
    serde_json::from_slice::<Raw>(payload)
        .ok()?
        .domain
        .filter(|d| !d.is_empty())
}

/// The message an advisory is about, when its payload says: (stream sequence, deliveries).
pub fn advisory_message(payload: &[u8]) -> (Option<u64>, Option<u64>) {
    #[derive(serde::Deserialize)]
    struct Raw {
        stream_seq: Option<u64>,
        deliveries: Option<u64>,
    }
    serde_json::from_slice::<Raw>(payload).map_or((None, None), |r| (r.stream_seq, r.deliveries))
}

/// Advisory counts of one consumer since start.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct AdvisoryCounts {
    pub max_deliveries: u64,
    pub msg_naked: u64,
    pub msg_terminated: u64,
    pub leader_elected: u64,
    pub other: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_advisories() {
        let a = parse_advisory_subject("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.GAME.srv-1")
            .unwrap();
        assert_eq!(a.kind, AdvisoryKind::MaxDeliveries);
        assert_eq!((a.stream, a.consumer), ("GAME", "srv-1"));
        let t = parse_advisory_subject("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.C").unwrap();
        assert_eq!(t.kind, AdvisoryKind::MsgTerminated);
        let c = parse_advisory_subject("$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.C").unwrap();
        assert_eq!(c.kind, AdvisoryKind::Other);
        assert_eq!(
            parse_advisory_subject("$JS.EVENT.ADVISORY.CONSUMER.X.S"),
            None
        );
        assert_eq!(
            parse_advisory_subject("$JS.EVENT.ADVISORY.CONSUMER.X.S.C.D"),
            None
        );
        assert_eq!(parse_advisory_subject("other"), None);
    }
}
