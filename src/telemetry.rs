//! ackscope's own counters, defined in one place with their exported names and help texts.
//!
//! The collector core owns a [`Counters`] value and bumps plain fields (it is single-threaded);
//! readers take a copy. Names follow Prometheus conventions and are stable.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($field:ident => $help:literal;)*) => {
        /// Counters that describe ackscope itself.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Counters {
            $(#[doc = $help] pub $field: u64,)*
        }

        impl Counters {
            /// (metric name, help, value) for every counter.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
                [$((concat!("ackscope_", stringify!($field), "_total"), $help, self.$field)),*]
                    .into_iter()
            }
        }
    };
}

counters! {
    ack_messages => "Messages seen on the ack tap.";
    delivery_messages => "JetStream deliveries seen on the delivery taps.";
    non_delivery_messages => "Messages on delivery patterns that were not JetStream deliveries.";
    metric_messages => "Server ack metric events seen.";
    advisory_messages => "Consumer advisories seen.";
    samples => "Samples recorded (joined, ack-only and server-metric).";
    samples_joined => "Samples with both the delivery and the ack observed.";
    samples_server_metric => "Samples taken from server ack metrics.";
    samples_reordered => "Samples whose ack arrived before its delivery (no ack latency).";
    unmatched_acks => "Acks whose delivery was not seen (e2e latency only).";
    expired_deliveries => "Deliveries never acked: redelivered or past their ack_wait bound.";
    progress_acks => "Work-in-progress (+WPI) acks.";
    ack_sync_acks => "Acks that asked for a confirmation (AckSync).";
    duplicate_acks => "Acks or ack metrics for a delivery already sampled.";
    duplicate_deliveries => "Deliveries seen twice.";
    join_overflow => "Deliveries not stored because the join table was full.";
    consumer_overflow => "Events dropped because the consumer table was full.";
    symbol_overflow => "Subjects or label values not recorded because the symbol table was full.";
    consumers_forgotten => "Consumers let go after join.forget_after without a message or a successful consumer info poll (their slot goes to new consumers).";
    symbols_forgotten => "Subjects and label values let go after join.forget_after unused.";
    forgotten_rows => "Kept raw samples whose consumer or subject/label was forgotten: kept, attributed to none.";
    consumer_name_invalid => "Events naming a stream or consumer JetStream would not allow (too long, wildcards, white space), dropped.";
    symbol_too_long => "Subjects or label values longer than 256 bytes, not recorded.";
    ack_subject_errors => "Malformed ack reply subjects.";
    ack_payload_errors => "Unrecognised ack payloads.";
    metric_errors => "Unparseable server ack metric events.";
    metric_unsampled => "Ack metrics for a consumer whose info says it samples no acks (forged or stale), dropped.";
    advisory_errors => "Unparseable advisories.";
    trace_id_invalid => "Trace id headers with an invalid value.";
    clock_skew => "Samples whose e2e latency was negative (server and ackscope clocks differ), clamped to 0.";
    server_time_outliers => "Server timestamps (ack metrics) over 20 ms ahead of ackscope's clock or more than join.max_clock_skew behind it, replaced by the time ackscope saw the message.";
    nats_disconnects => "Times the connection to NATS was lost (seen by the tap loop, every 100 ms).";
    expired_in_nats_gap => "Deliveries never acked that waited while NATS was down (their acks may be lost in the gap); not in expired_deliveries.";
    unmatched_acks_in_nats_gap => "Acks soon after a NATS outage whose delivery was not seen (it may have gone by in the gap); not in unmatched_acks.";
    late_events => "Events older than the open window, recorded into the open window.";
    windows_dropped => "Closed windows dropped because no reader took them.";
    latency_clamped => "Latencies above aggregate.max_latency, clamped.";
    ring_overwritten => "Raw samples overwritten in the full sample ring.";
    ack_none_deliveries => "Deliveries of consumers that need no ack (AckNone: ordered consumers, KV watchers), counted and not joined.";
    consumer_state_polls => "Consumer info requests answered.";
    consumer_state_errors => "Consumer info requests that failed.";
    clock_announcements => "Frame clocks announced by game servers and taken.";
    clock_announcement_errors => "Frame clock announcements refused (bad subject, payload or consumer name).";
    clock_announcements_dropped => "Frame clock announcements for consumers not seen yet, dropped because 1024 were waiting.";
    clocks_inferred => "Consumer frame clocks inferred or moved by inference (a new offset, drift, a restart).";
    clock_segments_dropped => "Old frame clocks of a consumer merged away because it had 64.";
    slow_consumer_events => "Slow-consumer events: the NATS client dropped messages on a tap.";
    tap_backlog_overflow => "Messages dropped because the backlog read while the collector was busy was full.";
    archive_samples_written => "Samples written to the archive's Parquet segments.";
    archive_segments_written => "Archive segments written.";
    archive_bytes_written => "Bytes of archive segments written.";
    archive_samples_dropped => "Samples not archived because the archive writer's queue was full (archive.queue_samples).";
    archive_rows_dropped => "Closed windows, ended spikes, advisories and consumer info polls not archived because the writer was behind (100,000 waiting, or 10,000 of a kind between two hand-overs).";
    archive_write_errors => "Archive segments that could not be written.";
    archive_samples_lost => "Samples of archive segments that could not be written.";
    archive_segments_deleted => "Archive segments deleted by retention (archive.retention, archive.max_size).";
    archive_samples_restored => "Samples loaded back from the archive at start: the latest, up to aggregate.ring_capacity, within the retained windows.";
    archive_rows_skipped => "Archived rows not loaded back at start because they lack an instant, a consumer or a known ack kind.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_unique() {
        let c = Counters {
            samples: 3,
            ..Counters::default()
        };
        let all: Vec<_> = c.iter().collect();
        let mut names: Vec<_> = all.iter().map(|(n, _, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("ackscope_") && n.ends_with("_total"))
        );
        assert!(all.contains(&(
            "ackscope_samples_total",
            "Samples recorded (joined, ack-only and server-metric).",
            3
        )));
    }
}

/// What the NATS client reports while it runs. The connection's state is read from the client
/// itself (its events can be dropped when the client is busy); events only count and log.
#[derive(Debug, Default)]
pub struct ClientEvents {
    /// Slow-consumer events: the client dropped messages of a tap.
    pub slow_consumers: AtomicU64,
    /// Failed attempts to connect or reconnect.
    pub connect_failures: AtomicU64,
    /// The client, once it exists (it may exist before NATS is reachable).
    client: OnceLock<async_nats::Client>,
    /// When each kind of log line was last written, so that a flood logs once in a while.
    last_logged_ns: [AtomicI64; LOG_KINDS],
    /// How late the tap loop ran and how long the server's round trip took.
    pub own: OwnDelays,
}

/// What [`ClientEvents::should_log`] rate-limits.
#[derive(Debug, Clone, Copy)]
pub enum LogKind {
    SlowConsumer = 0,
    ConnectFailure = 1,
}
const LOG_KINDS: usize = 2;

impl ClientEvents {
    /// Hands over the client whose state [`ClientEvents::connected`] reads.
    pub fn set_client(&self, client: async_nats::Client) {
        let _ = self.client.set(client);
    }

    /// The client, once there is one.
    pub fn client(&self) -> Option<async_nats::Client> {
        self.client.get().cloned()
    }

    /// Whether the client is connected to a server now.
    pub fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// Connections made since start (the first one included), as the client counts them.
    pub fn connects(&self) -> u64 {
        self.client
            .get()
            .map_or(0, |c| c.statistics().connects.load(Ordering::Relaxed))
    }

    /// Whether a line of `kind` may be logged at `now_ns`: at most one per `every_ns`.
    pub fn should_log(&self, kind: LogKind, now_ns: i64, every_ns: i64) -> bool {
        let last = &self.last_logged_ns[kind as usize];
        let before = last.load(Ordering::Relaxed);
        (before == 0 || now_ns.saturating_sub(before) >= every_ns)
            && last
                .compare_exchange(before, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// ackscope's own delays, per second over the last hour: how late its tap loop ran (its
/// 100 ms tick, late: the runtime did not schedule it, or it was busy) and the round trip of a
/// probe message to the NATS server and back. What an incident is checked against before it is
/// blamed on the game servers.
#[derive(Debug, Default)]
pub struct OwnDelays(std::sync::Mutex<std::collections::VecDeque<OwnSecond>>);

/// The worst of one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnSecond {
    /// Unix seconds.
    pub second: i64,
    pub tap_lag_ns: u64,
    pub rtt_ns: u64,
}

/// ackscope's own delays over a stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnDelaysOver {
    pub max_tap_lag_ns: u64,
    pub max_rtt_ns: u64,
    /// The median round trip of the minute before the stretch (0 when none was measured).
    pub usual_rtt_ns: u64,
    /// The median tap lag of the minute before the stretch.
    pub usual_tap_lag_ns: u64,
}

impl OwnDelays {
    /// Seconds kept.
    pub const SECONDS: usize = 3_600;

    fn update(&self, t_ns: i64, f: impl FnOnce(&mut OwnSecond)) {
        let second = t_ns.div_euclid(1_000_000_000);
        let mut seconds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The wall clock stepped back: what was kept is in another time line.
        if seconds.back().is_some_and(|last| second < last.second - 60) {
            seconds.clear();
        }
        match seconds.iter().rposition(|s| s.second <= second) {
            Some(i) if seconds[i].second == second => f(&mut seconds[i]),
            // Older than everything kept, or between two seconds: not worth a place.
            Some(i) if i + 1 != seconds.len() => {}
            None if !seconds.is_empty() => {}
            _ => {
                let mut s = OwnSecond {
                    second,
                    ..OwnSecond::default()
                };
                f(&mut s);
                if seconds.len() >= Self::SECONDS {
                    seconds.pop_front();
                }
                seconds.push_back(s);
            }
        }
    }

    /// The tap loop ran `lag_ns` late at `t_ns`.
    pub fn tap_lag(&self, t_ns: i64, lag_ns: u64) {
        self.update(t_ns, |s| s.tap_lag_ns = s.tap_lag_ns.max(lag_ns));
    }

    /// A round trip to the NATS server took `rtt_ns`, ending at `t_ns`.
    pub fn rtt(&self, t_ns: i64, rtt_ns: u64) {
        self.update(t_ns, |s| s.rtt_ns = s.rtt_ns.max(rtt_ns));
    }

    /// The worst of `[from_ns, to_ns)`, and the usual round trip before it.
    pub fn over(&self, from_ns: i64, to_ns: i64) -> OwnDelaysOver {
        let (from, to) = (
            from_ns.div_euclid(1_000_000_000),
            to_ns.div_euclid(1_000_000_000),
        );
        let seconds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut over = OwnDelaysOver::default();
        let mut before: Vec<u64> = Vec::new();
        let mut lag_before: Vec<u64> = Vec::new();
        for s in seconds.iter() {
            if s.second >= from && s.second <= to {
                over.max_tap_lag_ns = over.max_tap_lag_ns.max(s.tap_lag_ns);
                over.max_rtt_ns = over.max_rtt_ns.max(s.rtt_ns);
            } else if s.second < from && s.second >= from - 60 {
                lag_before.push(s.tap_lag_ns);
                if s.rtt_ns > 0 {
                    before.push(s.rtt_ns);
                }
            }
        }
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        over.usual_rtt_ns = median(&mut before);
        over.usual_tap_lag_ns = median(&mut lag_before);
        over
    }

    /// The latest second measured.
    pub fn latest(&self) -> Option<OwnSecond> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .copied()
    }
}

#[cfg(test)]
mod own_delays_tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn the_worst_of_each_second_and_the_usual_round_trip_before() {
        let d = OwnDelays::default();
        for t in 0..100 {
            d.rtt(t * S + 1, 200_000);
            d.tap_lag(t * S + 2, 1_000_000);
        }
        d.tap_lag(90 * S + 500_000_000, 300_000_000);
        d.rtt(91 * S, 50_000_000);
        let o = d.over(90 * S, 92 * S);
        assert_eq!(
            (o.max_tap_lag_ns, o.max_rtt_ns, o.usual_rtt_ns),
            (300_000_000, 50_000_000, 200_000)
        );
        assert_eq!(d.over(10 * S, 20 * S).max_tap_lag_ns, 1_000_000);
        // A late report of a second kept updates it; the newest second stays the newest.
        d.tap_lag(50 * S, 2_000_000);
        assert_eq!(d.over(50 * S, 50 * S).max_tap_lag_ns, 2_000_000);
        assert_eq!(d.latest().unwrap().second, 99);
        // The wall clock stepped back over a minute: what was kept is let go.
        d.tap_lag(5 * S, 999);
        assert_eq!(d.latest().unwrap().second, 5);
        assert_eq!(d.0.lock().unwrap().len(), 1);
        for t in 100..(100 + OwnDelays::SECONDS as i64) {
            d.rtt(t * S, 1);
        }
        assert_eq!(d.0.lock().unwrap().len(), OwnDelays::SECONDS);
    }
}
