//! Arbitrary paths and query strings against every route, on a collector with samples: any
//! answer but a 5xx, and no panic.
#![no_main]

use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

use ackscope::collector::Collector;
use ackscope::config::Config;
use ackscope::http::{AppState, Readiness, router};
use ackscope::model::Seen;
use ackscope::telemetry::ClientEvents;

const ROUTES: &[&str] = &[
    "/api/v1/report",
    "/api/v1/spikes",
    "/api/v1/consumers",
    "/api/v1/heatmap/phase.svg",
    "/api/v1/heatmap/time.svg",
    "/metrics",
    "/",
];

static STATE: LazyLock<AppState> = LazyLock::new(|| {
    let mut c = Collector::new(Config::default());
    let now = Seen::now();
    for i in 0..200u64 {
        let ms = (i as i64 - 200) * 10;
        let at = |extra: i64| Seen {
            mono_ns: (1_000_000 + i * 10 + extra as u64) * 1_000_000,
            wall_ns: now.wall_ns + (ms + extra) * 1_000_000,
        };
        let reply = format!("$JS.ACK.GAME.srv-1.1.{}.{}.{}.0", i + 1, i + 1, now.wall_ns);
        c.on_delivery("game.srv-1", Some(&reply), [("X-Server-Id", "srv-1")], at(0));
        c.on_ack(&reply, None, b"+ACK", at(2));
    }
    AppState::new(
        Arc::new(Mutex::new(c)),
        Arc::new(Readiness::new(Arc::new(ClientEvents::default()))),
    )
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Some((&route, query)) = data.split_first() else {
        return;
    };
    let path = ROUTES[route as usize % ROUTES.len()];
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(request) = Request::get(format!("{path}?{query}")).body(Body::empty()) else {
        return;
    };
    let status = RUNTIME.block_on(async {
        router(STATE.clone())
            .oneshot(request)
            .await
            .unwrap()
            .status()
    });
    assert!(!status.is_server_error(), "{path}?{query}: {status}");
});
