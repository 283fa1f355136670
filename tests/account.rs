//! A real account around the game: a KV bucket and its watcher (an ordered consumer), an
//! `AckNone` consumer, request/reply on `_INBOX`, ephemeral consumers that come and go, and a
//! client publishing nonsense on every tapped subject. The game consumer's numbers stay right,
//! the join table holds only what will be acked, and the windows keep closing.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::support::{
    Generation, NatsServer, Tapped, config, game_stream, next_message, play, pull_consumer,
    wait_until,
};

both_generations!(the_game_keeps_its_numbers_in_a_busy_account);

const GAME_ACKS: u64 = 50;
const EPHEMERALS: u64 = 500;
const LATER: u64 = 6;

async fn the_game_keeps_its_numbers_in_a_busy_account(generation: Generation) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let stream = game_stream(&client).await;
    let game = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    let audit: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("audit".into()),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("an AckNone consumer");

    // A KV bucket with a watcher: an ordered push consumer on an _INBOX subject, no acks.
    // The bucket's stream made by hand, as the KV API makes it: this client's own bucket
    // creation does not read a 2.9 server's answer.
    js.create_stream(jetstream::stream::Config {
        name: "KV_settings".into(),
        subjects: vec!["$KV.settings.>".into()],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("a KV bucket's stream");
    let bucket = js.get_key_value("settings").await.expect("the KV bucket");
    let mut watch = bucket.watch_all().await.expect("a KV watcher");
    // Request/reply: replies travel on _INBOX subjects too.
    let mut service = client.subscribe("svc.echo").await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(request) = service.next().await {
            if let Some(reply) = request.reply {
                let _ = responder.publish(reply, request.payload).await;
            }
        }
    });

    for i in 0..GAME_ACKS {
        play(&client, &game, 1).await;
        bucket
            .put(format!("key-{}", i % 10), format!("{i}").into())
            .await
            .unwrap();
        watch.next().await.expect("a KV update").unwrap();
        client
            .request("svc.echo", format!("ping {i}").into())
            .await
            .unwrap();
    }
    let mut audited = audit
        .fetch()
        .max_messages(GAME_ACKS as usize)
        .messages()
        .await
        .unwrap();
    for _ in 0..GAME_ACKS {
        audited.next().await.unwrap().unwrap();
    }

    // Ephemeral consumers that each take one message, ack it and go.
    for _ in 0..EPHEMERALS {
        let ephemeral: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::Explicit,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .unwrap();
        let name = ephemeral.cached_info().name.clone();
        next_message(&ephemeral).await.ack().await.unwrap();
        stream.delete_consumer(&name).await.unwrap();
    }

    // Nonsense on every tapped subject, once the consumers have been polled.
    tapped
        .wait_for("consumer info of srv-1 and audit", |c| {
            c.consumer_state_polls >= 4
        })
        .await;
    let huge = "x".repeat(60_000);
    let mut headers = HeaderMap::new();
    headers.insert("X-Server-Id", huge.as_str());
    headers.insert("traceparent", "00-zz-zz-01");
    for subject in ["_INBOX.junk", "deliver.junk"] {
        client
            .publish_with_reply_and_headers(
                subject,
                "$JS.ACK.GAME.srv-1.1.999.999.0",
                headers.clone(),
                "junk".into(),
            )
            .await
            .unwrap();
    }
    for subject in ["$JS.ACK.junk", "$JS.ACK.GAME.srv-1.a.b.c.d.e"] {
        client.publish(subject, "+ACK".into()).await.unwrap();
    }
    for stamp in ["1970-01-01T00:00:01Z", "2200-01-01T00:00:00Z"] {
        let forged = format!(
            r#"{{"type":"io.nats.jetstream.metric.v1.consumer_ack","timestamp":"{stamp}","stream":"GAME","consumer":"srv-1","consumer_seq":999,"stream_seq":999,"ack_time":900000000,"deliveries":1}}"#
        );
        client
            .publish("$JS.EVENT.METRIC.CONSUMER.ACK.GAME.srv-1", forged.into())
            .await
            .unwrap();
    }
    client
        .publish("$JS.EVENT.METRIC.CONSUMER.ACK.GAME.srv-1", "{".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    // The game plays on for three seconds, a message every half second.
    let closed = |c: &ackscope::collector::Collector| c.aggregator().history(None).count();
    let before = tapped.with(closed);
    for _ in 0..LATER {
        play(&client, &game, 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let expected = GAME_ACKS + LATER + EPHEMERALS;
    let counters = tapped
        .wait_for("every ack joined and the nonsense counted", |c| {
            c.samples == expected && c.metric_unsampled == 2 && c.metric_errors >= 1
        })
        .await;
    // Nothing was refused for want of room, and nothing counted twice.
    assert_eq!(counters.join_overflow, 0);
    assert_eq!(counters.consumer_overflow, 0);
    assert_eq!(counters.symbol_overflow, 0);
    // Each ack met its delivery (on a busy machine a few acks are read before their delivery:
    // joined all the same, without an ack latency).
    assert_eq!(
        counters.samples_joined + counters.samples_reordered,
        expected,
        "{counters:#?}"
    );
    assert!(counters.ack_subject_errors >= 2, "{counters:#?}");
    assert!(
        counters.non_delivery_messages >= GAME_ACKS,
        "the echo replies"
    );
    // What needs no ack is recognised and leaves the join table.
    let pending = wait_until(
        "only the forged delivery left waiting",
        || tapped.with(|c| c.joiner().pending_len()),
        |n| *n <= 2,
    )
    .await;
    let counters = tapped.counters();
    assert!(
        counters.ack_none_deliveries >= 2 * GAME_ACKS,
        "audit and the KV watcher: {counters:#?} ({pending} pending)"
    );
    // The game consumer's own samples, all of them and only them: none of the forged metrics
    // (stream sequence 999, ack time 900 ms) nor the forged delivery. (An ack read before its
    // delivery is joined without an ack latency.)
    let rows = tapped.with(|c| {
        let id = c
            .consumers()
            .find(|(_, s, n)| (*s, *n) == ("GAME", "srv-1"))
            .unwrap()
            .0;
        let mine: Vec<_> = c
            .aggregator()
            .ring()
            .iter()
            .filter(|r| r.consumer == id)
            .collect();
        (c.facts(id).unwrap().totals.acks, mine)
    });
    assert_eq!(rows.0, GAME_ACKS + LATER);
    assert_eq!(rows.1.len() as u64, GAME_ACKS + LATER);
    assert!(
        rows.1
            .iter()
            .all(|r| r.stream_seq != 999 && r.ack_latency_ns.is_none_or(|l| l < 900_000_000)),
        "{:?}",
        rows.1
    );
    // Windows kept closing on ackscope's clock, whatever the forged stamps said.
    assert!(tapped.with(closed) >= before + 2);
    assert_eq!(tapped.counters().late_events, 0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        });
    eprintln!(
        "{generation:?}: {} consumers tracked, {} symbols; this test process {}",
        tapped.with(|c| c.names().consumer_count()),
        tapped.with(|c| c.names().symbol_count()),
        rss.unwrap_or_default()
    );
    tapped.stop().await;
}

both_generations!(a_consumer_in_a_jetstream_domain_is_known_by_it_and_polled_there);

/// A server with a JetStream domain: the newer ack subjects name it, the older ones do not,
/// but its events (the consumer's creation, ack metrics) do: either way there is one consumer,
/// known by its domain and asked for its info in it (`$JS.hub.API`).
async fn a_consumer_in_a_jetstream_domain_is_known_by_it_and_polled_there(generation: Generation) {
    let store = tempfile::tempdir().expect("a store dir");
    let server = NatsServer::start_with(
        generation,
        &format!(
            "jetstream {{ store_dir: {:?}, domain: hub }}",
            store.path().display().to_string()
        ),
    );
    let tapped = Tapped::start(config(&server, "")).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let game = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 100).await;
    play(&client, &game, 5).await;
    let polled = |c: &ackscope::collector::Collector| {
        c.consumers()
            .map(|(id, s, n)| {
                let facts = c.facts(id).expect("facts of a consumer held");
                (
                    s.to_string(),
                    n.to_string(),
                    c.names().consumer_domain(id).map(str::to_string),
                    facts.state.is_some(),
                    facts.totals.acks,
                )
            })
            .collect::<Vec<_>>()
    };
    let held = wait_until(
        "the consumer polled in its domain, its 5 acks counted",
        || tapped.with(polled),
        |held| held.len() == 1 && held[0].3 && held[0].4 == 5,
    )
    .await;
    assert_eq!(
        held,
        vec![("GAME".into(), "srv-1".into(), Some("hub".into()), true, 5)]
    );
    // The server's ack metrics (sample_frequency 100) went to it too: no second consumer.
    let k = tapped
        .wait_for("the server's ack metrics", |k| k.metric_messages >= 5)
        .await;
    assert_eq!(tapped.with(|c| c.consumers().count()), 1);
    assert_eq!((k.consumer_state_errors, k.consumer_name_invalid), (0, 0));
    tapped.stop().await;
}
