//! NATS going away under a running `serve`, and `serve` started before NATS is up: readiness
//! follows the client's connection, the outage is counted and reported, and nothing collected
//! is lost or counted twice.

use std::time::{Duration, Instant};

use crate::support::{
    Generation, NatsServer, game_stream, http_get, metric, play, poll, pull_consumer, serve,
};

both_generations!(
    a_nats_restart_is_a_reported_gap,
    serve_waits_for_nats_and_is_not_ready_meanwhile,
);

async fn a_nats_restart_is_a_reported_gap(generation: Generation) {
    let mut server = NatsServer::start(generation);
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    let (addr, _stop) = serve(&server);
    poll(&addr, "/readyz", |status, _| status == 200).await;
    assert_eq!(play(&client, &consumer, 20).await, 0);
    let sampled =
        |n: f64| move |_: u16, text: &str| metric(text, "ackscope_samples_total") == Some(n);
    poll(&addr, "/metrics", sampled(20.0)).await;

    // NATS goes away: not ready, and the reason says why.
    server.stop();
    let (_, reason) = poll(&addr, "/readyz", |status, _| status == 503).await;
    assert!(reason.contains("disconnected from NATS"), "{reason}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Back on the same port and store: ready again, and the game goes on.
    bring_back(&mut server, &addr, &format!("{generation:?}"), "came back").await;
    let again = play(&client, &consumer, 20).await;
    eprintln!("{generation:?}: {again} earlier messages delivered again after the restart");
    let (_, text) = poll(&addr, "/metrics", sampled(40.0)).await;

    // One outage of at least the time NATS was down; nothing lost or counted twice.
    let counter = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name}: {text}"));
    assert_eq!(counter("ackscope_nats_disconnects_total"), 1.0);
    let down = counter("ackscope_nats_disconnected_seconds_total");
    assert!((1.0..30.0).contains(&down), "{down}");
    assert_eq!(counter("ackscope_samples_total"), 40.0);
    assert_eq!(counter("ackscope_expired_deliveries_total"), 0.0);
    assert_eq!(counter("ackscope_unmatched_acks_total"), 0.0);
    // What the server delivered again counts once (a duplicate), and waits for nothing.
    assert_eq!(counter("ackscope_duplicate_acks_total"), again as f64);
    assert_eq!(counter("ackscope_join_pending"), 0.0);
    let (status, report) = http_get(&addr, "/api/v1/report").await.unwrap();
    assert_eq!(status, 200, "{report}");
    let report: ackscope::api::Report = serde_json::from_str(&report).unwrap();
    assert_eq!(report.counts.acks, 40, "{:?}", report.counts);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("NATS was unreachable from")),
        "{:?}",
        report.warnings
    );
}

async fn serve_waits_for_nats_and_is_not_ready_meanwhile(generation: Generation) {
    let mut server = NatsServer::start(generation);
    server.stop();
    // Waiting for NATS, it still stops when asked.
    let mut waiting = crate::support::config(&server, "");
    waiting.listen = crate::support::free_addr().parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ackscope::service::serve(waiting, async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        ended.is_ok_and(|r| r.is_ok_and(|r| r.is_ok())),
        "serve stops on shutdown while waiting for NATS"
    );

    let (addr, _stop) = serve(&server);
    // Up and answering, not ready, for longer than the old 10 s start-up limit would allow
    // half of.
    let (_, reason) = poll(&addr, "/readyz", |status, _| status == 503).await;
    assert!(reason.contains("connecting to NATS"), "{reason}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, _) = http_get(&addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);

    bring_back(&mut server, &addr, &format!("{generation:?}"), "came up").await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    assert_eq!(play(&client, &consumer, 5).await, 0);
    let (_, text) = poll(&addr, "/metrics", |_, text| {
        metric(text, "ackscope_samples_total") == Some(5.0)
    })
    .await;
    assert_eq!(metric(&text, "ackscope_nats_disconnects_total"), Some(0.0));
}

/// Starts `server` (again) and waits until `serve` at `addr` is ready; prints how long that
/// took after NATS `came` (back, or up).
async fn bring_back(server: &mut NatsServer, addr: &str, generation: &str, came: &str) {
    server.restart();
    let back = Instant::now();
    poll(addr, "/readyz", |status, _| status == 200).await;
    eprintln!("{generation}: ready {:?} after NATS {came}", back.elapsed());
}
