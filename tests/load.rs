//! A flood of heavy HTTP queries while the game plays: the taps drop nothing, no answer is a
//! 5xx, and every ack is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::{CPU, Generation, ServedGame, http_get, metric, poll};

/// The routes that walk the sample ring or draw, at their most expensive.
const HEAVY: &[&str] = &[
    "/api/v1/heatmap/time.svg?phase_bins=2000&width=4000&height=3000",
    "/api/v1/heatmap/phase.svg?phase_bins=2000&width=4000&height=3000",
    "/api/v1/report?phase_bins=2000",
    "/api/v1/spikes",
    "/api/v1/consumers",
    "/metrics",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_heavy_queries_loses_no_tap_message() {
    let _cpu = CPU.lock().await;
    let game = ServedGame::start(Generation::Current).await;
    let (client, consumer, addr) = (&game.client, &game.consumer, &game.addr);

    // 32 clients ask for the heaviest answers, over and over, while the game plays.
    let done = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..32 {
        let (addr, done) = (addr.clone(), done.clone());
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut k = i;
            while !done.load(Ordering::Relaxed) {
                let path = HEAVY[k % HEAVY.len()];
                let (status, _) = http_get(&addr, path).await.unwrap_or((0, String::new()));
                statuses.push((path, status));
                k += 1;
            }
            statuses
        }));
    }

    // The game: 3,000 messages, fetched 100 at a time and each acked.
    let js = async_nats::jetstream::new(client.clone());
    let started = Instant::now();
    let mut acked = 0;
    while acked < 3_000 {
        for i in 0..100 {
            js.publish("game.srv-1", format!("state {i}").into())
                .await
                .expect("publish")
                .await
                .expect("publish ack");
        }
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            message.expect("a message").ack().await.expect("ack");
            acked += 1;
        }
    }
    let played = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for task in flood {
        statuses.extend(task.await.unwrap());
    }

    let (_, text) = poll(addr, "/metrics", |_, text| {
        metric(text, "ackscope_samples_total") == Some(3_000.0)
    })
    .await;
    let counter = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(counter("ackscope_tap_backlog_overflow_total"), 0.0);
    assert_eq!(counter("ackscope_slow_consumer_events_total"), 0.0);
    // Every ack met its delivery (one read before its delivery is joined without a latency).
    assert_eq!(
        counter("ackscope_samples_joined_total") + counter("ackscope_samples_reordered_total"),
        3_000.0
    );
    let refused = statuses.iter().filter(|(_, s)| *s == 429).count();
    let bad: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| ![200, 429].contains(s))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    for path in HEAVY {
        assert!(
            statuses.iter().any(|(p, s)| p == path && *s == 200),
            "{path} answered at least once"
        );
    }
    assert_eq!(
        counter("ackscope_http_queries_refused_total"),
        refused as f64
    );
    eprintln!(
        "{} queries in {played:?} of play ({refused} turned away with 429), 3,000 acks, no tap drops",
        statuses.len()
    );
}
