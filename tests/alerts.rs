//! Alerts end to end: the simulator injects a fault on one server, then stalls every server at
//! once; ackscope (`serve`) sends what fires to a real Alertmanager, a webhook receiver and
//! NATS. Then: bad rules are a start-up error, and the Prometheus rules pass promtool.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use ackscope::config::RawConfig;
use ackscope::sim::{self, scenario::RawScenario};

use crate::support::{Generation, NatsServer, free_addr, http_get, poll};

const SECRET: &str = "test-webhook-secret-0123456789";
const P99: &str = "AckP99Regression";

/// srv-2 pauses 60 ms every second from 12 s to 24 s; from 40 s to 50 s every server does.
const SCENARIO: &str = r#"
name = "alerts"
seed = 7
duration = "60s"

[fleet]
servers = 4
tick = "16ms"
events_per_frame = 3

[jetstream]
ack_wait = "2s"
max_ack_pending = 200

[processing]
logic = "3ms"
cost_median = "100us"
cost_p99 = "400us"

[[faults]]
kind = "gc_pause"
start = "12s"
duration = "12s"
servers = [2]
pause = "60ms"
every = "1s"

[[faults]]
kind = "gc_pause"
start = "40s"
duration = "10s"
servers = []
pause = "60ms"
every = "1s"
"#;

/// A real Alertmanager: gossip off, a short `group_wait`, a temp store; killed on drop.
struct Alertmanager {
    _process: ackscope::alertmanager::Alertmanager,
    addr: String,
}

impl Alertmanager {
    async fn start() -> Self {
        let process = tokio::task::spawn_blocking(|| {
            ackscope::alertmanager::Alertmanager::start(&ackscope::alertmanager::binary())
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("{e}; ./scripts/test.sh installs Debian's prometheus-alertmanager")
        });
        Self {
            addr: process.addr().to_string(),
            _process: process,
        }
    }

    /// The alerts Alertmanager holds as active (neither resolved nor expired).
    async fn alerts(&self) -> Vec<Value> {
        let (status, body) = http_get(&self.addr, "/api/v2/alerts").await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// Each POST the webhook receiver got: signature header, body, the status it answered.
type Calls = Arc<Mutex<Vec<(Option<String>, Bytes, u16)>>>;

/// Refuses the first POST (503), takes the others.
async fn hook(State(calls): State<Calls>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut calls = calls.lock().unwrap();
    let status = if calls.is_empty() { 503 } else { 200 };
    let signature = headers
        .get("x-ackscope-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    calls.push((signature, body, status));
    StatusCode::from_u16(status).unwrap()
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A query value with its `%XX` escapes decoded.
fn percent_decoded(value: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or("")
}

/// The P99 alerts Alertmanager holds for `consumer`.
async fn p99_alerts(am: &Alertmanager, consumer: &str) -> Vec<Value> {
    am.alerts()
        .await
        .into_iter()
        .filter(|a| label(a, "alertname") == P99 && label(a, "consumer") == consumer)
        .collect()
}

/// Polls until `done` holds for the P99 alerts of `consumer`; fails at `deadline`.
async fn until(
    am: &Alertmanager,
    consumer: &str,
    deadline: Instant,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    loop {
        let alerts = p99_alerts(am, consumer).await;
        if done(&alerts) {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: Alertmanager holds {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_page_once_with_their_cause_and_resolve() {
    let _loading = crate::support::CPU.lock().await;
    let server = NatsServer::start(Generation::Current);
    let am = Alertmanager::start().await;

    let calls: Calls = Arc::default();
    let hook_addr = free_addr();
    let listener = tokio::net::TcpListener::bind(&hook_addr).await.unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(calls.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // What the simulator sends srv-2: the trace ids an alert about it may name.
    let client = server.client().await;
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut srv2 = client.subscribe("game.srv-2.state").await.unwrap();
    let collected = sent.clone();
    tokio::spawn(async move {
        while let Some(m) = srv2.next().await {
            let traceparent = m.headers.as_ref().and_then(|h| h.get("traceparent"));
            if let Some(trace) = traceparent.and_then(|tp| tp.as_str().split('-').nth(1)) {
                collected.lock().unwrap().insert(trace.to_string());
            }
        }
    });
    // Alerts on NATS, as game-ops tooling would read them.
    let on_nats: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let mut alerts_sub = client.subscribe("ackscope.alerts.>").await.unwrap();
    let nats = on_nats.clone();
    tokio::spawn(async move {
        while let Some(m) = alerts_sub.next().await {
            let body = serde_json::from_slice(&m.payload).expect("an alert is JSON");
            nats.lock().unwrap().push((m.subject.to_string(), body));
        }
    });
    client.flush().await.unwrap();

    let addr = free_addr();
    let data = tempfile::tempdir().unwrap();
    let mut raw = RawConfig::from_toml(&format!(
        r#"
[http]
listen = "{addr}"
[archive]
enabled = true
dir = "{dir}"
flush_interval = "1s"
[alerts]
alertmanager = ["http://{am}"]
webhooks = ["http://{hook_addr}/hook"]
webhook_secret = "{SECRET}"
evaluate_every = "1s"
resend = "5s"
[[alerts.rules]]
name = "{P99}"
keep_firing_for = "3s"
"#,
        am = am.addr,
        dir = data.path().display()
    ))
    .unwrap();
    raw.nats.urls = vec![server.url()];
    let config = raw.validate().unwrap();
    let (_stop_serve, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ackscope::service::serve(config, async {
        let _ = stopped.await;
    }));
    poll(&addr, "/readyz", |status, _| status == 200).await;

    let scenario = RawScenario::from_toml(SCENARIO)
        .unwrap()
        .validate()
        .unwrap();
    let (_stop_sim, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(sim::run(client.clone(), scenario, stop));

    // The fault on srv-2 becomes visible within three windows of 12 s; paged within 30 s of it.
    let at = |s: u64| started + Duration::from_secs(s);
    let firing = until(
        &am,
        "srv-2",
        at(12 + 3 + 30),
        "srv-2's gc pause pages",
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let alert = &firing[0];
    assert_eq!(label(alert, "cause"), "gc_pause", "{alert:#}");
    assert_eq!(label(alert, "stream"), "GAME");
    assert_eq!(
        label(alert, "severity"),
        "critical",
        "60 ms is over the 16 ms frame: {alert:#}"
    );
    let traces: Vec<&str> = alert["annotations"]["trace_ids"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(!traces.is_empty(), "{alert:#}");
    {
        let sent = sent.lock().unwrap();
        for t in &traces {
            assert!(sent.contains(*t), "trace {t} was not sent to srv-2");
        }
    }
    let annotations = &alert["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .unwrap()
            .contains("gc_pause"),
        "{alert:#}"
    );
    assert!(
        annotations["heatmap_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "http://{addr}/api/v1/heatmap/phase.svg?stream=GAME&consumer=srv-2"
            ))
    );
    let incident = annotations["incident"].as_str().unwrap().to_string();
    let dashboard = annotations["dashboard_url"].as_str().unwrap();
    let (_, linked) = dashboard.split_once("incident=").expect(dashboard);
    assert_eq!(percent_decoded(linked), incident);

    // It resolves once the fault is over (24 s) and the alert's keep_firing_for has passed.
    until(&am, "srv-2", at(24 + 30), "srv-2's alert resolves", |a| {
        a.is_empty()
    })
    .await;
    let (_, body) = http_get(&addr, "/api/v1/alerts").await.unwrap();
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let resolved: Vec<&Value> = listed
        .iter()
        .filter(|a| a["alertname"] == P99 && label(a, "consumer") == "srv-2")
        .collect();
    assert_eq!(resolved.len(), 1, "{listed:#?}");
    assert_eq!(resolved[0]["state"], "resolved");
    assert!(resolved[0]["resolved_at"].is_string());

    // Every server stalls at once (40 s): one incident, one alert, not one per consumer. On a
    // loaded machine one server's spike can begin a window after the others': the alert then
    // fires naming 3 consumers, and its annotations (those of the latest evaluation, sent again
    // every `resend`) name the 4th once it has joined.
    let all_four = |a: &Value| {
        a["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("4 consumers (fleet-wide)"))
    };
    let fleet = until(
        &am,
        "*",
        at(40 + 3 + 30),
        "the machine-wide stall pages, naming its 4 consumers",
        |a| a.iter().any(all_four),
    )
    .await;
    assert_eq!(fleet.len(), 1, "{fleet:#?}");
    assert_eq!(label(&fleet[0], "cause"), "gc_pause", "{:#}", fleet[0]);
    assert!(all_four(&fleet[0]), "{:#}", fleet[0]);
    let truth = run.await.unwrap().expect("the simulation runs");
    let stall = &truth.faults[1];
    let (_, body) = http_get(
        &addr,
        &format!("/api/v1/incidents?from={}&to={}", stall.start, stall.end),
    )
    .await
    .unwrap();
    let incidents: Vec<Value> = serde_json::from_str(&body).expect(&body);
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["kind"], "fleet");
    assert_eq!(
        incidents[0]["consumers"].as_array().unwrap().len(),
        4,
        "{:#}",
        incidents[0]
    );
    assert_eq!(incidents[0]["top_cause"], "gc_pause", "{:#}", incidents[0]);

    // Healthy consumers paged nothing: every P99 alert Alertmanager got was srv-2's or the fleet's.
    let posted = calls.lock().unwrap().clone();
    let p99: Vec<Value> = posted
        .iter()
        .map(|(_, body, _)| serde_json::from_slice::<Value>(body).unwrap())
        .filter(|a| a["alertname"] == P99)
        .collect();
    let scopes: HashSet<&str> = p99.iter().map(|a| label(a, "consumer")).collect();
    let unexpected: Vec<&Value> = p99
        .iter()
        .filter(|a| !["srv-2", "*"].contains(&label(a, "consumer")))
        .collect();
    assert_eq!(scopes, HashSet::from(["srv-2", "*"]), "{unexpected:#?}");

    // The webhook: the first POST refused, the same body taken on the retry, every body signed.
    assert!(posted.len() >= 3, "{posted:?}");
    assert_eq!((posted[0].2, posted[1].2), (503, 200));
    assert_eq!(posted[0].1, posted[1].1, "the retry sends the same alert");
    for (sig, body, _) in &posted {
        assert_eq!(sig.as_deref(), Some(signature(body).as_str()));
    }
    let states: BTreeMap<&str, usize> = p99
        .iter()
        .filter(|a| label(a, "consumer") == "srv-2")
        .fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a["status"].as_str().unwrap()).or_default() += 1;
            m
        });
    assert!(states.get("firing").is_some_and(|n| *n >= 1), "{states:?}");
    assert_eq!(states.get("resolved"), Some(&1), "{states:?}");

    // A 60 ms pause a second puts several percent of srv-2's acks over the frame: its
    // frame-budget error budget burns far over 14.4x, and the burn alert names the cause too.
    let burn: Vec<Value> = posted
        .iter()
        .map(|(_, body, _)| serde_json::from_slice::<Value>(body).unwrap())
        .filter(|a| a["alertname"] == "FrameBudgetBurnFast" && label(a, "consumer") == "srv-2")
        .collect();
    assert!(!burn.is_empty(), "no fast burn alert for srv-2");
    assert_eq!(label(&burn[0], "cause"), "gc_pause", "{:#}", burn[0]);
    assert!(burn[0]["value"].as_f64().unwrap() > 14.4);

    // NATS: the same alerts on ackscope.alerts.<rule>.<stream>.<consumer>.
    let on_nats = on_nats.lock().unwrap().clone();
    let subjects: HashSet<&str> = on_nats
        .iter()
        .filter(|(_, a)| a["alertname"] == P99)
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(
        subjects,
        HashSet::from([
            "ackscope.alerts.AckP99Regression.GAME.srv-2",
            "ackscope.alerts.AckP99Regression._all._all"
        ])
    );
    // The history in the archive: srv-2's alert fired and resolved; its incident, with its
    // cause. (The machine-wide one may end after the run.)
    let rows = |sql: &str| {
        let answer = ackscope::archive::query::run(data.path(), sql, 0, i64::MAX).unwrap();
        ackscope::archive::query::json_rows(&answer.frame)
    };
    let history = rows(
        "SELECT alertname, state, cause, trace_ids FROM alerts WHERE consumer = 'srv-2' AND alertname = 'AckP99Regression' ORDER BY at_ns",
    );
    let states: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|r| {
            (
                r["alertname"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["cause"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [(P99, "firing", "gc_pause"), (P99, "resolved", "gc_pause")],
        "{history:#?}"
    );
    let incidents = rows(
        "SELECT kind, consumer, consumers, top_cause, exemplar_trace_ids FROM incidents WHERE consumer = 'srv-2'",
    );
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(
        (
            incidents[0]["kind"].as_str(),
            incidents[0]["top_cause"].as_str()
        ),
        (Some("consumer"), Some("gc_pause"))
    );
    assert!(
        incidents[0]["consumers"]
            .as_str()
            .unwrap()
            .contains("GAME/srv-2")
    );
    assert!(
        on_nats
            .iter()
            .any(|(s, a)| s.ends_with("srv-2") && a["status"] == "resolved")
    );
}

#[tokio::test]
async fn bad_rules_are_a_start_up_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        (
            "[[alerts.rules]]\nname = \"Mine\"\nthreshold = 0.1\n",
            "alerts.rules[0].kind",
        ),
        (
            "[[alerts.rules]]\nname = \"AckP99Regression\"\nfor = \"soon\"\n",
            "alerts.rules[0].for",
        ),
        ("[alerts]\nobjective = 1.5\n", "alerts.objective"),
        (
            "[alerts]\nalertmanager = [\"localhost:9093\"]\n",
            "alerts.alertmanager",
        ),
    ] {
        let path = dir.path().join("ackscope.toml");
        std::fs::write(&path, toml).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackscope"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{toml}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(key), "{toml}: {stderr}");
    }
}

/// The recording and alerting rules in `prometheus/` pass `promtool check rules`, and their
/// unit tests pass `promtool test rules`.
#[test]
fn prometheus_rules_check_and_pass_their_tests() {
    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(
        promtool.is_file(),
        "promtool not found: run ./scripts/test.sh, which installs Debian's prometheus"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus");
    for args in [
        ["check", "rules", "ackscope.rules.yml"],
        ["test", "rules", "ackscope.rules.test.yml"],
    ] {
        let out = std::process::Command::new(promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
