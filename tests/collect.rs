//! The collectors against a real nats-server, on both server generations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;

use ackscope::aggregate::window::Counts;
use ackscope::collect::acks::parse_ack_subject;
use ackscope::model::{AckKind as Kind, SampleSource, Seen};

use crate::support::{
    Generation, NatsServer, Tapped, config, game_stream, next_message, pull_consumer, wait_until,
};

const MS: u64 = 1_000_000;

both_generations!(
    pull_acks_carry_latency_and_trace_ids,
    push_consumer_deliveries_are_joined,
    ack_kinds_are_classified,
    redelivery_after_ack_wait_expires_the_first_delivery,
    server_ack_metrics_give_one_sample_per_delivery,
    latencies_stay_true_while_the_collector_is_held,
);

/// A report or a spike analysis can hold the collector for a while; the taps read on and keep
/// the instant each message arrived, so nothing measured then looks late.
async fn latencies_stay_true_while_the_collector_is_held(generation: Generation) {
    let srv1 = Srv1::start(generation).await;
    let held = srv1.tapped.collector.clone();
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _c = held.lock().unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(600));
    });
    is_locked.recv().unwrap();
    let start = Instant::now();
    publish(&srv1.client, "srv-1", 20).await;
    for _ in 0..20 {
        next_message(&srv1.consumer).await.ack().await.unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "the traffic ran while the collector was held"
    );
    holder.join().unwrap();
    let counters = srv1
        .tapped
        .wait_for("20 joined samples", |c| c.samples_joined >= 20)
        .await;
    assert_eq!(counters.tap_backlog_overflow, 0);
    srv1.tapped.with(|c| {
        for row in c.aggregator().ring().iter() {
            // Stored → acked takes a few ms here; the collector was held 600 ms.
            let e2e = row.e2e_latency_ns.unwrap();
            assert!(e2e < 100 * MS, "e2e {e2e} ns");
            assert!(row.ack_latency_ns.unwrap() < 100 * MS);
        }
    });
}

/// The trace id of message `i`, as 32 hex digits.
fn trace_hex(i: usize) -> String {
    format!("4bf92f3577b34da6a3ce929d{:08x}", i + 1)
}

async fn publish(client: &async_nats::Client, server_id: &str, count: usize) {
    let js = jetstream::new(client.clone());
    for i in 0..count {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            format!("00-{}-00f067aa0ba902b7-01", trace_hex(i)).as_str(),
        );
        headers.insert("X-Server-Id", server_id);
        js.publish_with_headers(format!("game.{server_id}.state"), headers, "tick".into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

/// A server, the taps on it and pull consumer `srv-1` of GAME (ack wait 30 s, not sampled):
/// what the latency tests measure, with the machine's CPU to themselves.
struct Srv1 {
    _measuring: tokio::sync::MutexGuard<'static, ()>,
    _server: NatsServer,
    tapped: Tapped,
    client: async_nats::Client,
    consumer: consumer::Consumer<consumer::pull::Config>,
}

impl Srv1 {
    async fn start(generation: Generation) -> Self {
        let measuring = crate::support::CPU.lock().await;
        let server = NatsServer::start(generation);
        let tapped = Tapped::start(config(&server, "")).await;
        let client = server.client().await;
        let stream = game_stream(&client).await;
        let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
        Self {
            _measuring: measuring,
            _server: server,
            tapped,
            client,
            consumer,
        }
    }
}

/// Tokens in the reply subject of a delivered message: 9 on 2.9, 11 on 2.15 with js_ack_fc_v2.
fn reply_tokens(msg: &jetstream::Message) -> usize {
    msg.reply.as_ref().map_or(0, |r| r.split('.').count())
}

fn expected_tokens(generation: Generation) -> usize {
    match generation {
        Generation::Legacy => 9,
        Generation::Current => 11,
    }
}

/// Window counts so far for all consumers: closed windows plus the open one.
fn total_counts(tapped: &Tapped) -> Counts {
    tapped.with(|c| {
        let mut total = c.aggregator().open_all().counts;
        for w in c.aggregator().history(None) {
            total.add(&w.counts);
        }
        total
    })
}

/// What the game server of the latency test measured of one message.
struct OwnTiming {
    /// Receipt → before the ack, and → after the ack call returned.
    before: Duration,
    after: Duration,
    /// Halfway through the ack call, on the wall clock (the bare subscriber's clock).
    acked_wall_ns: i64,
}

async fn pull_acks_carry_latency_and_trace_ids(generation: Generation) {
    let srv1 = Srv1::start(generation).await;
    publish(&srv1.client, "srv-1", 20).await;

    // The baseline, measured in the same run: a bare subscriber that only notes when each ack
    // reaches it. No tap can see an ack before it has gone client → server → subscriber; that
    // trip is the client's and the machine's, not ackscope's.
    let bare_acks = Arc::new(Mutex::new(HashMap::new()));
    let mut acks = srv1.client.subscribe("$JS.ACK.>").await.unwrap();
    srv1.client.flush().await.unwrap();
    let bare = {
        let bare_acks = bare_acks.clone();
        tokio::spawn(async move {
            while let Some(m) = acks.next().await {
                let at = Seen::now().wall_ns;
                let seq = parse_ack_subject(&m.subject).unwrap().stream_seq;
                bare_acks.lock().unwrap().insert(seq, at);
            }
        })
    };

    // The game server: takes each message, works 20 ms, acks. It times itself.
    let mut own = HashMap::new();
    let mut seen = 0;
    while seen < 20 {
        let msg = next_message(&srv1.consumer).await;
        let received = Instant::now();
        assert_eq!(reply_tokens(&msg), expected_tokens(generation));
        let trace = msg
            .headers
            .as_ref()
            .unwrap()
            .get("traceparent")
            .unwrap()
            .to_string();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = received.elapsed();
        let wall_before = Seen::now().wall_ns;
        msg.ack().await.unwrap();
        let after = received.elapsed();
        let timing = OwnTiming {
            before,
            after,
            acked_wall_ns: (wall_before + Seen::now().wall_ns) / 2,
        };
        own.insert(trace[3..35].to_string(), timing);
        seen += 1;
    }
    assert_eq!(seen, 20);
    let counters = srv1
        .tapped
        .wait_for("20 joined samples", |c| c.samples_joined >= 20)
        .await;
    assert_eq!(counters.ack_subject_errors, 0);
    assert_eq!(counters.unmatched_acks, 0);
    assert_eq!(counters.trace_id_invalid, 0);
    wait_until(
        "the bare subscriber's 20 acks",
        || bare_acks.lock().unwrap().len(),
        |n| *n >= 20,
    )
    .await;
    bare.abort();
    let bare_acks = bare_acks.lock().unwrap().clone();

    srv1.tapped.with(|c| {
        let rows: Vec<_> = c.aggregator().ring().iter().collect();
        assert_eq!(rows.len(), 20);
        // ackscope's delivery → ack latency against the consumer's own clock (receipt → ack
        // call). Their difference is the ack's trip to any subscriber (measured above) plus
        // what ackscope adds (how late it stamps the ack less how late it stamps the delivery,
        // and any error in the latency it reports): within 0.5 ms in the median, tens of µs
        // on an idle machine. `ackscope-eval accuracy` measures the whole difference with the
        // consumer in its own process.
        let mut differences = Vec::new();
        let mut added = Vec::new();
        let mut trips = Vec::new();
        let mut short = Vec::new();
        for row in &rows {
            let trace = row.trace_id.expect("trace id from traceparent").to_string();
            let timing = &own[&trace];
            let measured = Duration::from_nanos(row.ack_latency_ns.unwrap());
            // The injected 20 ms shows up: never 5 ms short of it, and more than 1 ms short
            // once at most (a delivery stamped late by a busy machine: seen at 18.7 ms).
            assert!(
                measured >= Duration::from_millis(15),
                "{trace}: {measured:?}"
            );
            if measured < Duration::from_millis(19) {
                short.push(measured);
            }
            let own = (timing.before + timing.after) / 2;
            let difference = measured.as_secs_f64() - own.as_secs_f64();
            let trip = (bare_acks[&row.stream_seq] - timing.acked_wall_ns) as f64 / 1e9;
            differences.push(difference);
            trips.push(trip);
            added.push(difference - trip);
        }
        assert!(short.len() <= 1, "more than 1 ms short: {short:?}");
        differences.sort_by(f64::total_cmp);
        added.sort_by(f64::total_cmp);
        let median = added[added.len() / 2];
        assert!(
            median.abs() < 0.0005,
            "ackscope adds {median}s in the median: {added:?}; the whole differences: {differences:?}; the acks' trips to a bare subscriber: {trips:?}"
        );
        // What ackscope adds within 5 ms for each sample, but one: a busy 2-core machine can
        // keep the tap from a CPU for longer now and then (seen once at 13 ms while a
        // benchmark ran beside the tests). The whole difference, which holds the ack's trip
        // through the client and the server, is not bounded per sample: with one core busy and
        // a build beside the tests it reached 5.8–9.4 ms for two samples of twenty.
        let off = added.iter().filter(|d| d.abs() >= 0.005).count();
        assert!(
            off <= 1,
            "{off} samples with 5 ms or more added: {added:?}; the whole differences: {differences:?}; the acks' trips: {trips:?}"
        );
        for row in rows {
            assert!(row.e2e_latency_ns.unwrap() >= row.ack_latency_ns.unwrap());
            assert_eq!(row.source, SampleSource::Observed);
            assert_eq!(row.kind, Kind::Ack);
            assert_eq!(c.names().symbol_name(row.subject), Some("game.srv-1.state"));
            assert_eq!(c.names().symbol_name(row.labels[0]), Some("srv-1"));
            assert_eq!(c.names().consumer_names(row.consumer), ("GAME", "srv-1"));
        }
    });
    srv1.tapped.stop().await;
}

async fn push_consumer_deliveries_are_joined(generation: Generation) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = stream
        .create_consumer(consumer::push::Config {
            durable_name: Some("srv-2".into()),
            deliver_subject: "deliver.srv-2".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap().take(10);
    publish(&client, "srv-2", 10).await;
    while let Some(msg) = messages.next().await {
        let msg = msg.unwrap();
        assert_eq!(reply_tokens(&msg), expected_tokens(generation));
        tokio::time::sleep(Duration::from_millis(5)).await;
        msg.ack().await.unwrap();
    }
    let counters = tapped
        .wait_for("10 joined samples", |c| c.samples_joined >= 10)
        .await;
    assert_eq!(counters.samples_joined, 10);
    assert_eq!(counters.unmatched_acks, 0);
    tapped.with(|c| {
        for row in c.aggregator().ring().iter() {
            // At least the 5 ms of work; the ten arrive at once and are handled one after
            // another, so the last waits for the nine before it (on a loaded machine well over
            // 100 ms): the bound above only catches a wrong join.
            let latency = row.ack_latency_ns.unwrap();
            assert!((5 * MS..2_000 * MS).contains(&latency), "{latency}");
            assert!(row.trace_id.is_some());
            assert_eq!(c.names().consumer_names(row.consumer), ("GAME", "srv-2"));
        }
    });
    tapped.stop().await;
}

async fn ack_kinds_are_classified(generation: Generation) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-3", Duration::from_secs(30), 0).await;
    publish(&client, "srv-3", 3).await;

    let mut batch = consumer.fetch().max_messages(3).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    let second = batch.next().await.unwrap().unwrap();
    let third = batch.next().await.unwrap().unwrap();
    first.ack_with(AckKind::Progress).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.ack().await.unwrap();
    second.ack_with(AckKind::Nak(None)).await.unwrap();
    third.ack_with(AckKind::Term).await.unwrap();
    // The NAKed message comes back with a delivery count of 2.
    let again = next_message(&consumer).await;
    assert_eq!(again.info().unwrap().delivered, 2);
    again.double_ack().await.unwrap();

    let counters = tapped.wait_for("4 samples", |c| c.samples >= 4).await;
    assert_eq!(counters.progress_acks, 1);
    assert_eq!(counters.ack_sync_acks, 1);
    assert_eq!(counters.samples_joined, 4);
    let counts = total_counts(&tapped);
    assert_eq!(
        (counts.deliveries, counts.acks, counts.naks, counts.terms),
        (4, 2, 1, 1)
    );
    assert_eq!((counts.progress, counts.redeliveries), (1, 1));

    tapped.with(|c| {
        let mut rows: Vec<_> = c
            .aggregator()
            .ring()
            .iter()
            .map(|r| {
                (
                    r.stream_seq,
                    r.deliveries,
                    r.kind,
                    r.ack_latency_ns.unwrap(),
                )
            })
            .collect();
        rows.sort_by_key(|r| (r.0, r.1));
        let kinds: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.2)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, 1, Kind::Ack),
                (2, 1, Kind::Nak),
                (2, 2, Kind::Ack),
                (3, 1, Kind::Term)
            ]
        );
        // Progress does not end the delivery: its latency spans the 50 ms of work after it
        // (had progress ended it, about 1 ms). A tap kept from a CPU by a busy machine stamps
        // the delivery late, shortening what it measures: seen 28 ms for 30 ms of work with
        // one core busy, so the bound leaves 20 ms for that.
        assert!(rows[0].3 >= 30 * MS, "{}", rows[0].3);
    });
    tapped.stop().await;
}

async fn redelivery_after_ack_wait_expires_the_first_delivery(generation: Generation) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-4", Duration::from_secs(1), 0).await;
    publish(&client, "srv-4", 1).await;

    let first = next_message(&consumer).await;
    assert_eq!(first.info().unwrap().delivered, 1);
    // Never acked: the server redelivers after ack_wait.
    let again = next_message(&consumer).await;
    assert_eq!(again.info().unwrap().delivered, 2);
    again.ack().await.unwrap();

    let counters = tapped
        .wait_for("the redelivered sample", |c| c.samples >= 1)
        .await;
    assert_eq!(counters.expired_deliveries, 1);
    assert_eq!(counters.samples_joined, 1);
    let counts = total_counts(&tapped);
    assert_eq!(
        (
            counts.deliveries,
            counts.redeliveries,
            counts.expired_deliveries
        ),
        (2, 1, 1)
    );
    tapped.with(|c| {
        let row = c.aggregator().ring().iter().next().unwrap();
        assert_eq!(row.deliveries, 2);
        // Measured from the redelivery, not the first delivery a second earlier.
        assert!(row.ack_latency_ns.unwrap() < 500 * MS);
        assert!(row.e2e_latency_ns.unwrap() >= 1_000 * MS);
    });
    // The consumer state tap learns ack_wait.
    tapped
        .wait_for("a consumer state poll", |c| c.consumer_state_polls >= 1)
        .await;
    tapped.with(|c| {
        let state = c.facts(0).unwrap().state.clone().unwrap();
        assert_eq!(state.ack_wait_ns, 1_000 * MS);
        assert_eq!(c.joiner().expiry_ns(0), 2_000 * MS);
    });
    tapped.stop().await;
}

async fn server_ack_metrics_give_one_sample_per_delivery(generation: Generation) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-5", Duration::from_secs(30), 100).await;
    publish(&client, "srv-5", 10).await;
    for _ in 0..10 {
        let msg = next_message(&consumer).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        msg.ack().await.unwrap();
    }
    let counters = tapped
        .wait_for("10 ack metrics", |c| {
            c.metric_messages >= 10 && c.samples >= 10
        })
        .await;
    // Each delivery was seen twice (observed ack and server metric), but sampled once.
    assert_eq!(counters.samples, 10);
    assert_eq!(counters.metric_errors, 0);
    assert_eq!(counters.duplicate_acks, 10);
    tapped.stop().await;

    // Without the delivery tap, the server's ack_time provides the ack latency.
    let tapped = Tapped::start(config(&server, "[taps]\ndeliveries = false")).await;
    publish(&client, "srv-5", 10).await;
    for _ in 0..10 {
        let msg = next_message(&consumer).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        msg.ack().await.unwrap();
    }
    let counters = tapped
        .wait_for("10 server-metric samples", |c| {
            c.samples_server_metric >= 10
        })
        .await;
    assert_eq!(counters.samples, 10);
    assert_eq!(counters.unmatched_acks, 0);
    tapped.with(|c| {
        for row in c.aggregator().ring().iter() {
            assert_eq!(row.source, SampleSource::ServerMetric);
            let ack = row.ack_latency_ns.unwrap();
            assert!((15 * MS..30 * MS).contains(&ack), "{ack}");
            // The ack subject's stored time still gives the e2e latency.
            assert!(row.e2e_latency_ns.unwrap() >= ack);
        }
    });
    tapped.stop().await;
}
