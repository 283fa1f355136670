//! ackscope in an SRE's stack: the Grafana dashboards in `dashboards/` (their structure, and
//! every PromQL expression evaluated against a real Prometheus scraping a running ackscope fed
//! by the simulator), exemplars on `/metrics` (the trace ids Prometheus stores are those the
//! simulator sent), and the docker-compose stack's files, validated offline.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ackscope::sim::{self, scenario::RawScenario};
use serde_json::Value;

use crate::support::{Generation, NatsServer, free_addr, http_get, poll};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every dashboard in `dashboards/`: file name and JSON.
fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo("dashboards"))
        .expect("dashboards/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "fleet, consumer and SLO dashboards");
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL expression of a dashboard: its panels' targets.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_string())))
        })
        .collect()
}

/// `$name`, `${name}`, `${name:fmt}` and `[[name]]` references in a string.
fn variables_used(text: &str) -> Vec<String> {
    let word = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        let rest = &text[i..];
        let name = if c == '$' {
            let after = &rest[1..];
            word(after.strip_prefix('{').unwrap_or(after))
        } else if let Some(after) = rest.strip_prefix("[[") {
            word(after)
        } else {
            continue;
        };
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

const BUILT_IN: [&str; 6] = [
    "__rate_interval",
    "__interval",
    "__range",
    "__all",
    "__name",
    "__value",
];

#[test]
fn dashboards_are_well_formed() {
    let mut uids = HashSet::new();
    for (file, d) in dashboards() {
        assert!(
            d["id"].is_null(),
            "{file}: \"id\": null, so Grafana assigns one"
        );
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: a stable uid");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} twice");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{file}");

        let vars = d["templating"]["list"].as_array().expect("templating");
        let defined: HashSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(defined.len(), vars.len(), "{file}: variable named twice");
        let ds = vars
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: a datasource variable"));
        assert_eq!(ds["query"], "prometheus", "{file}");
        for name in ["stream", "consumer", "server"] {
            let v = vars
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: a {name} variable"));
            let q = v["definition"].as_str().unwrap_or_default();
            assert!(q.starts_with("label_values("), "{file}: {name}: {q}");
        }

        let mut ids = HashSet::new();
        let top: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: {title}: id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            let g = &p["gridPos"];
            let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
            let (Some(x), Some(w), Some(h), Some(_)) = (x, w, h, g["y"].as_u64()) else {
                panic!("{file}: {title}: gridPos {g}");
            };
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{file}: {title}: gridPos {g}"
            );
            if p["type"] == "row" {
                continue;
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                assert!(t["refId"].as_str().is_some(), "{file}: {title}: refId");
                let uid = t["datasource"]["uid"]
                    .as_str()
                    .or(p["datasource"]["uid"].as_str())
                    .unwrap_or_else(|| panic!("{file}: {title}: a datasource"));
                assert_eq!(uid, "${datasource}", "{file}: {title}");
            }
        }
        // Panels on the grid do not overlap (a collapsed row's panels are not on it).
        let cells = |p: &Value| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap();
            (n("x"), n("y"), n("w"), n("h"))
        };
        let placed: Vec<&Value> = panels(&d)
            .into_iter()
            .filter(|p| {
                top.iter().any(|t| std::ptr::eq(*t, *p)) || {
                    // Nested: on the grid when its row is open.
                    !top.iter().any(|row| {
                        row["collapsed"] == true
                            && row["panels"]
                                .as_array()
                                .is_some_and(|ps| ps.iter().any(|q| std::ptr::eq(q, *p)))
                    })
                }
            })
            .collect();
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                let (ax, ay, aw, ah) = cells(a);
                let (bx, by, bw, bh) = cells(b);
                let apart = ax + aw <= bx || bx + bw <= ax || ay + ah <= by || by + bh <= ay;
                assert!(apart, "{file}: {} overlaps {}", a["title"], b["title"]);
            }
        }

        let mut texts = Vec::new();
        strings(&d, &mut texts);
        for name in texts.iter().flat_map(|t| variables_used(t)) {
            assert!(
                defined.contains(name.as_str()) || BUILT_IN.contains(&name.as_str()),
                "{file}: ${name} is used but not defined"
            );
        }
        assert!(!expressions(&d).is_empty(), "{file}: no queries");
    }

    // Grafana's provisioning reads them where docker-compose mounts them.
    let provider = std::fs::read_to_string(repo("dashboards/provisioning/dashboards/ackscope.yml"))
        .expect("the dashboard provider");
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let path = provider
        .lines()
        .find_map(|l| l.trim().strip_prefix("path:"))
        .expect("the provider's path")
        .trim();
    assert!(
        compose.contains(&format!("./dashboards:{path}")),
        "docker-compose mounts dashboards/ at {path}"
    );
    let datasources =
        std::fs::read_to_string(repo("dashboards/provisioning/datasources/ackscope.yml")).unwrap();
    assert!(datasources.contains("type: prometheus"), "{datasources}");
}

#[test]
fn variable_references_are_found() {
    assert_eq!(
        variables_used("a{stream=~\"$stream\"}[$__rate_interval] ${consumer:regex} [[server]]"),
        ["stream", "__rate_interval", "consumer", "server"]
    );
}

/// A real Prometheus (Debian's 2.42, exemplar storage on) scraping `target` every second;
/// killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str) -> Self {
        let binary = Path::new("/usr/bin/prometheus");
        assert!(
            binary.is_file(),
            "Prometheus not found: run ./scripts/test.sh, which installs Debian's prometheus"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ackscope\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Prometheus starts");
        poll(&addr, "/-/ready", |status, _| status == 200).await;
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `GET path?query`: the `data` of a successful answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query = serde_urlencoded::to_string(params).unwrap();
        let (status, body) = http_get(&self.addr, &format!("{path}?{query}"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{path} {params:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        v["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Grafana's variables as the test evaluates them: every stream, server and consumer.
fn substituted(expr: &str) -> String {
    let values: HashMap<&str, &str> = [
        ("stream", ".*"),
        ("server", ".*"),
        ("consumer", ".*"),
        ("objective", "0.999"),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "5m"),
    ]
    .into_iter()
    .collect();
    let mut out = expr.to_string();
    // Longest names first, so that `$__rate_interval` is not read as `$__range`'s prefix.
    let mut names: Vec<&&str> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), values[*name])
            .replace(&format!("${name}"), values[*name]);
    }
    out
}

const SCENARIO: &str = r#"
name = "stack"
seed = 11
duration = "70s"

[fleet]
servers = 4
tick = "16ms"
events_per_frame = 3

[jetstream]
ack_wait = "2s"
max_ack_pending = 200

[[faults]]
kind = "gc_pause"
start = "15s"
duration = "30s"
servers = [2]
pause = "60ms"
every = "1s"
"#;

/// A running ackscope fed by the simulator, scraped by a real Prometheus: every expression of
/// every dashboard returns data, every variable's query finds values, and the exemplars
/// Prometheus stored from the OpenMetrics exposition are trace ids the simulator sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let _loading = crate::support::CPU.lock().await;
    let server = NatsServer::start(Generation::Current);
    let client = server.client().await;
    let sent = crate::support::traceparents(&client, "game.>").await;

    let (addr, _stop_serve) = crate::support::serve(&server);
    poll(&addr, "/readyz", |status, _| status == 200).await;
    let prometheus = Prometheus::start(&addr).await;
    let scenario = RawScenario::from_toml(SCENARIO)
        .unwrap()
        .validate()
        .unwrap();
    let (_stop_sim, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let _run = tokio::spawn(sim::run(client.clone(), scenario, stop));

    // srv-2's pause fires ackscope's P99 alert (pending or firing) within 35 s; by then every
    // rate window of a minute or less has samples. Every query must answer then.
    let deadline = started + Duration::from_secs(60);
    loop {
        let data = prometheus
            .api("/api/v1/query", &[("query", "ackscope_alert_active")])
            .await;
        let alerting = data["result"].as_array().is_some_and(|r| !r.is_empty());
        if alerting && started.elapsed() >= Duration::from_secs(40) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ackscope_alert_active series in Prometheus after 60 s: {data}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut empty = Vec::new();
    let mut checked = 0;
    for (file, d) in dashboards() {
        for (title, expr) in expressions(&d) {
            let q = substituted(&expr);
            let data = prometheus.api("/api/v1/query", &[("query", &q)]).await;
            checked += 1;
            let has_data = match data["resultType"].as_str() {
                Some("vector" | "matrix") => !data["result"].as_array().unwrap().is_empty(),
                Some("scalar") => true,
                other => panic!("{file}: {title}: {other:?}"),
            };
            if !has_data {
                empty.push(format!("{file}: {title}: {q}"));
            }
        }
        // Variables: the series their label_values() reads exist and carry the label.
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(def) = v["definition"].as_str() else {
                continue;
            };
            let Some(inner) = def
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
            else {
                continue;
            };
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let series = prometheus
                .api(
                    "/api/v1/series",
                    &[("match[]", &substituted(selector.trim()))],
                )
                .await;
            let values: BTreeSet<&str> = series
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s[label.trim()].as_str())
                .collect();
            assert!(
                !values.is_empty(),
                "{file}: variable {}: {def} finds nothing",
                v["name"]
            );
            if label.trim() == "server" || label.trim() == "consumer" {
                assert!(
                    values.contains("srv-2"),
                    "{file}: {}: {values:?}",
                    v["name"]
                );
            }
        }
    }
    assert!(
        empty.is_empty(),
        "{checked} queries, these returned nothing: {empty:#?}"
    );
    assert!(checked >= 20, "only {checked} queries in the dashboards");

    // Exemplars: the latency buckets carry trace ids, and each is one the simulator sent.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let data = prometheus
        .api(
            "/api/v1/query_exemplars",
            &[
                ("query", "ackscope_ack_latency_seconds_bucket"),
                ("start", &(now - 300).to_string()),
                ("end", &(now + 10).to_string()),
            ],
        )
        .await;
    let traces: Vec<String> = data
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert!(traces.len() >= 4, "exemplars: {data}");
    let sent = sent.lock().unwrap();
    for t in &traces {
        assert!(
            sent.contains_key(t),
            "exemplar {t} is no trace id the simulator sent"
        );
    }
    // A slow bucket's exemplar is srv-2's: its pauses are the acks past the frame.
    let slow: Vec<&Value> = data
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let le: f64 = s["seriesLabels"]["le"]
                .as_str()
                .unwrap()
                .replace("+Inf", "inf")
                .parse()
                .unwrap();
            le > 0.033
        })
        .collect();
    assert!(
        slow.iter()
            .any(|s| s["seriesLabels"]["consumer"] == "srv-2"),
        "a slow bucket of srv-2 has an exemplar: {slow:#?}"
    );
}

/// docker-compose.yml validates (`docker-compose config -q`, Debian's docker-compose), every
/// image is pinned by a version in `.env`, ackscope runs as non-root, and the stack's
/// Prometheus and Alertmanager configs pass `promtool check config` and `amtool check-config`.
#[test]
fn compose_stack_validates_offline() {
    let run = |program: &str, args: &[&str]| {
        assert!(
            Path::new(program).is_file(),
            "{program} not found: run ./scripts/test.sh, which installs it"
        );
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(repo(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("/usr/bin/docker-compose", &["config", "-q"]);
    let resolved = run("/usr/bin/docker-compose", &["config"]);
    run(
        "/usr/bin/promtool",
        &["check", "config", "prometheus/prometheus.yml"],
    );
    run(
        "/usr/bin/amtool",
        &["check-config", "deploy/alertmanager.yml"],
    );

    let env = std::fs::read_to_string(repo(".env")).unwrap();
    let pinned: HashMap<&str, &str> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(str::trim)
        .collect();
    assert!(images.len() >= 8, "{images:?}");
    for image in &images {
        if *image == "ackscope:local" {
            continue;
        }
        let var = image
            .split_once(":${")
            .and_then(|(_, v)| v.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{image}: pinned by a version variable in .env"));
        let version = pinned
            .get(var)
            .unwrap_or_else(|| panic!("{var} is not in .env"));
        assert!(
            !version.is_empty() && *version != "latest",
            "{var}={version}"
        );
        assert!(
            resolved.contains(&image.replace(&format!("${{{var}}}"), version)),
            "docker-compose resolves {image} to version {version}"
        );
    }
    for service in [
        "nats",
        "ackscope",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "tempo",
    ] {
        assert!(
            resolved.contains(&format!("\n  {service}:\n")),
            "service {service}"
        );
    }

    // The image's last stage runs as a non-root user.
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER in the last stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "root" && uid != "0", "USER {user}");
}
