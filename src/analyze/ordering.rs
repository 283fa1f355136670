//! The ordering audit: of the messages a consumer acked, the share acked after a later stream
//! sequence of the same subject had already been acked — the "ordered delivery failure rate"
//! game teams track. Per consumer and subject, in ack order.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::aggregate::ring::RingRow;
use crate::model::{AckKind, ConsumerId, FORGOTTEN_CONSUMER, Sym};

/// The report's `ordering` block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ordering {
    /// Acks checked.
    pub checked: u64,
    /// Acks of a message whose subject already had a later stream sequence acked.
    pub out_of_order: u64,
    /// `out_of_order / checked` (0 when nothing was checked).
    pub rate: f64,
}

/// Audits `rows` (any order; they are taken in ack order). Only acks (not NAKs or terms) count,
/// and only rows whose consumer and subject are known (a forgotten consumer's rows are many
/// consumers' under one id).
pub fn audit(rows: impl IntoIterator<Item = RingRow>) -> Ordering {
    // (acked, consumer, subject, stream seq): 24 bytes a row, whatever the ring holds besides.
    let mut acks: Vec<(i64, ConsumerId, Sym, u64)> = rows
        .into_iter()
        .filter(|r| {
            r.kind == AckKind::Ack && !r.subject.is_none() && r.consumer != FORGOTTEN_CONSUMER
        })
        .map(|r| (r.acked_ns, r.consumer, r.subject, r.stream_seq))
        .collect();
    acks.sort_unstable_by_key(|a| a.0);
    let mut highest: FxHashMap<(ConsumerId, Sym), u64> = FxHashMap::default();
    let mut result = Ordering::default();
    for (_, consumer, subject, seq) in acks {
        result.checked += 1;
        let top = highest.entry((consumer, subject)).or_insert(0);
        if seq < *top {
            result.out_of_order += 1;
        } else {
            *top = seq;
        }
    }
    if result.checked > 0 {
        result.rate = result.out_of_order as f64 / result.checked as f64;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NO_LABELS, SampleSource};

    fn row(consumer: ConsumerId, subject: u32, seq: u64, acked_ns: i64) -> RingRow {
        RingRow {
            consumer,
            stream_seq: seq,
            deliveries: 1,
            acked_ns,
            delivered_ns: None,
            ack_latency_ns: Some(1),
            e2e_latency_ns: None,
            kind: AckKind::Ack,
            source: SampleSource::Observed,
            trace_id: None,
            subject: Sym(subject),
            labels: NO_LABELS,
        }
    }

    #[test]
    fn counts_acks_behind_a_later_sequence_of_the_same_subject() {
        let rows = [
            row(0, 1, 1, 10),
            row(0, 1, 3, 20),
            row(0, 1, 2, 30), // behind 3: out of order
            row(0, 2, 2, 35), // another subject: its own order
            row(1, 1, 2, 40), // another consumer: its own order
            row(0, 1, 4, 50),
        ];
        let o = audit(rows);
        assert_eq!((o.checked, o.out_of_order), (6, 1));
        assert!((o.rate - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn rows_are_taken_in_ack_order_and_naks_do_not_count() {
        let mut nak = row(0, 1, 9, 5);
        nak.kind = AckKind::Nak;
        let rows = [row(0, 1, 2, 30), row(0, 1, 3, 20), nak];
        let o = audit(rows);
        assert_eq!((o.checked, o.out_of_order), (2, 1));
        assert_eq!(audit([]), Ordering::default());
    }
}
