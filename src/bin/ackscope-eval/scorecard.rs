//! The attribution scorecard: runs fault scenarios through the simulator against a real
//! nats-server with ackscope collecting beside it, then scores ackscope's spikes and causes
//! against the simulator's truth: per cause, detection recall (a spike on the faulty consumer
//! starting within 2 windows of the fault's onset), top-1 and top-3 cause accuracy, and false
//! spikes per consumer-hour of healthy traffic.
//!
//! `ackscope-eval scorecard [--seeds 1,2,3] [--servers 8] [--scale 1.0] [--healthy-minutes M]
//! [--spikes deviations=4,min_windows=3]`
//! Each run: 8 or more servers, 25 s healthy, then each fault in turn on its own server for 10 s
//! with 10 s healthy between; servers 8 and up stay healthy throughout. `--scale` multiplies
//! every fault's magnitude; `--healthy-minutes` adds a run with no faults at all. A spike is
//! false when it does not overlap its consumer's fault (from 2 windows before it to 15 s after
//! it ends) and the latency was not really there: spikes during a stall of the simulator
//! itself (a frame of that server starting ≥ 4 ms late) and spikes the server's own latency
//! shows too (its e2e P99 per second, stored → ack sent as the server measured it, spiking by
//! the same detector) are counted apart, as real but not injected; the first 5 s of a run,
//! when nothing can spike, do not count as healthy time. `--scenario FILE` scores one scenario file (run once) instead
//! of the built-in suite; `ackscope serve` runs as its own process beside the simulator, with
//! `--spikes` as its `[spikes]` settings (its defaults when not given).
//! A fault counts as detected when a spike of its consumer is on within 2 windows of the moment
//! it can first be seen (its onset, or for lost acks, its onset plus `ack_wait`: the server
//! redelivers no sooner).
//!
//! It also scores the alerts `serve` fires (see `pages`): per fault kind, whether the fault's
//! consumer was paged (`AckP99Regression`), how soon after the fault could be seen, and with
//! which cause; pages per machine-wide event (a fault on three servers or more); and P99 pages
//! with no fault behind them, over the same healthy consumer-time as the false spikes.

use std::collections::BTreeMap;
use std::time::Duration;

use ackscope::analyze::config::SpikeConfig;
use ackscope::analyze::spikes::{self as detect, WindowP99, find_spikes};
use ackscope::api::{Cause, Spike};
use ackscope::nats_server::{self, NatsServer};
use ackscope::sim::{self, scenario::RawScenario};
use ackscope::units::parse_duration;

use crate::pages::{Alertmanager, Fired, Page, PageScore};

/// `scorecard`.
#[derive(Debug, clap::Args)]
pub struct ScorecardArgs {
    /// Seeds of the built-in suite, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    seeds: Vec<u64>,
    /// Simulated servers (8 at least: one per fault and a healthy one).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(8..))]
    servers: u32,
    /// Multiplies every fault's magnitude.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Adds a run with no faults at all, this long.
    #[arg(long, default_value_t = 0)]
    healthy_minutes: u64,
    /// Scores this scenario file, once through, instead of the suite.
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// The suite each seed runs.
    #[arg(long, default_value = "scenarios/scorecard.toml")]
    suite: std::path::PathBuf,
    /// `key=value,…` for ackscope's `[spikes]` settings (its defaults when not given).
    #[arg(long, default_value = "")]
    spikes: String,
}

/// The suite for one seed: `servers` servers, every fault's magnitude times `scale`.
fn scenario(suite: &RawScenario, seed: u64, servers: u32, scale: f64) -> RawScenario {
    let mut s = suite.clone();
    s.name = format!("score-{seed}");
    s.seed = seed;
    s.fleet.servers = servers;
    let scaled_ms = |d: &mut Option<String>| {
        let ns = parse_duration(d.as_deref().unwrap_or_default()).expect("a duration");
        *d = Some(format!(
            "{}ms",
            (ns.as_secs_f64() * 1e3 * scale).round() as u64
        ));
    };
    for f in &mut s.faults {
        match f.kind.as_str() {
            "gc_pause" => scaled_ms(&mut f.pause),
            "flow_control" => scaled_ms(&mut f.cost),
            "load_burst" => f.factor = f.factor.map(|x| (x * scale).max(2.0)),
            // A slow server still fits its frame (3 ms logic + 3 messages): past that it falls
            // behind, its consumer fills max_ack_pending and that is flow control.
            "slow_server" => {
                let ns = parse_duration(f.cost.as_deref().unwrap_or_default()).expect("a cost");
                let us = ((ns.as_secs_f64() * 1e6 * scale).round() as u64).min(3_300);
                f.cost = Some(format!("{us}us"));
            }
            _ => {}
        }
    }
    s
}

/// The suite without its faults: `servers` healthy servers for `minutes`.
fn healthy(suite: &RawScenario, seed: u64, servers: u32, minutes: u64) -> RawScenario {
    let mut s = scenario(suite, seed, servers, 1.0);
    s.name = format!("healthy-{seed}");
    s.duration = format!("{minutes}m");
    s.faults.clear();
    s
}

/// How long after a fault ends its consumer may still spike from it (backlogs drain).
const SETTLE_NS: i64 = 15_000_000_000;
/// Windows at the start of a run that cannot spike (the baseline warms up).
const WARMUP_NS: i64 = 5_000_000_000;
const WINDOW_NS: i64 = 1_000_000_000;

#[derive(Default, Debug)]
struct Score {
    faults: u32,
    detected: u32,
    top1: u32,
    top3: u32,
    /// Per 0.1 of confidence: root causes given (not a consequence of another, not
    /// `unknown`) and how many of them were the fault's cause.
    given: [u32; 10],
    right: [u32; 10],
}

impl Score {
    fn add(&mut self, other: &Score) {
        self.faults += other.faults;
        self.detected += other.detected;
        self.top1 += other.top1;
        self.top3 += other.top3;
        for b in 0..10 {
            self.given[b] += other.given[b];
            self.right[b] += other.right[b];
        }
    }
}

/// `ackscope serve` as a child process, killed on drop.
struct Serve {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// `spikes`: `key=value` pairs for the `[spikes]` config section, comma-separated.
    /// `tick`: the fleet's frame period, as an SRE would configure it.
    /// `alertmanager`: where it sends its alerts, when one runs.
    fn start(nats_url: &str, spikes: &str, tick: &str, alertmanager: Option<&str>) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ackscope.toml");
        let spikes: String = spikes
            .split(',')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.replacen('=', " = ", 1) + "\n")
            .collect();
        std::fs::write(
            &config,
            format!("[taps]\nconsumer_state_interval = \"1s\"\n[spikes]\n{spikes}"),
        )
        .unwrap();
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let child = std::process::Command::new(crate::ackscope_binary())
            .args([
                "serve", "--nats", nats_url, "--listen", &addr, "--tick", tick,
            ])
            .arg("--config")
            .arg(&config)
            .args(
                alertmanager
                    .map(|url| ["--alertmanager", url])
                    .into_iter()
                    .flatten(),
            )
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ackscope serve");
        let serve = Serve {
            child,
            addr,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while serve.get("/readyz").is_none_or(|(status, _)| status != 200) {
            assert!(std::time::Instant::now() < deadline, "serve not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }

    /// A GET of `path`: its status and body, `None` while nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(format!("http://{}{path}", self.addr))
            .call()
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().ok()?))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run's truth, the spikes found and the alerts fired.
type Run = (sim::truth::Truth, Vec<Spike>, Vec<Page>);

/// Runs a scenario against a fresh nats-server with `ackscope serve` beside it, as it would
/// run in production (its own process), and a real Alertmanager when one is installed;
/// returns the truth, every spike it found and every alert it fired.
fn run(
    runtime: &tokio::runtime::Runtime,
    binary: &std::path::Path,
    scenario: RawScenario,
    spikes: &str,
) -> Run {
    let server = NatsServer::start(binary, "").expect("nats-server");
    let mut am = Alertmanager::start();
    let serve = Serve::start(
        &server.url(),
        spikes,
        &scenario.fleet.tick,
        am.as_ref().map(|am| am.url.as_str()),
    );
    let s = scenario.validate().unwrap();
    let url = server.url();
    let sim = runtime.spawn(async move {
        let client = async_nats::connect(url).await.unwrap();
        let (_keep, stop) = tokio::sync::watch::channel(false);
        sim::run(client, s, stop).await.unwrap()
    });
    // Spikes are read every 30 s, as someone watching would see them: ackscope keeps 5 minutes
    // of windows and 2 minutes of consumer state, less than a long scenario. Each spike is
    // kept as first seen, unless a later read shows it grew.
    let mut spikes: BTreeMap<String, Spike> = BTreeMap::new();
    let read = |spikes: &mut BTreeMap<String, Spike>| {
        let (status, body) = serve.get("/api/v1/spikes").expect("spikes");
        assert_eq!(status, 200, "{body}");
        let found: Vec<Spike> = serde_json::from_str(&body).unwrap();
        for sp in found {
            let key = format!("{} {} {:?}", sp.consumer, sp.start, sp.latency);
            if spikes.get(&key).is_none_or(|old| old.end != sp.end) {
                spikes.insert(key, sp);
            }
        }
    };
    // Alerts are read as often (ackscope lists the latest 200 resolved ones); Alertmanager
    // every 500 ms, to time each page's arrival.
    let mut fired = Fired::default();
    let read_alerts = |fired: &mut Fired| {
        let (status, body) = serve.get("/api/v1/alerts").expect("alerts");
        assert_eq!(status, 200, "{body}");
        fired.record(&body);
    };
    let mut last = std::time::Instant::now();
    let mut tail: Option<std::time::Instant> = None;
    // After the simulator stops: the last window closes, the last consumer state poll lands,
    // and an alert of the last fault has the time it takes to fire and arrive.
    while tail.is_none_or(|t| t.elapsed() < Duration::from_secs(20)) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(am) = am.as_mut() {
            am.poll();
        }
        if last.elapsed() >= Duration::from_secs(30) {
            read(&mut spikes);
            read_alerts(&mut fired);
            last = std::time::Instant::now();
        }
        if tail.is_none() && sim.is_finished() {
            tail = Some(std::time::Instant::now());
        }
    }
    let truth = runtime.block_on(sim).unwrap();
    read(&mut spikes);
    read_alerts(&mut fired);
    let pages = fired.pages(am.as_ref());
    (truth, spikes.into_values().collect(), pages)
}

fn instant(t: &str) -> i64 {
    let t = humantime::parse_rfc3339(t).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A spike's start and end, Unix nanoseconds.
fn span(sp: &Spike) -> (i64, i64) {
    (instant(&sp.start), instant(&sp.end))
}

/// Spikes on healthy consumers: those no injected fault explains, split into spikes while the
/// simulator itself stalled (a frame of that server started ≥ 4 ms late within the spike or
/// the window before it: the acks really were late) and false spikes; and the consumer-time
/// they could have happened in: every consumer's run, less the warm-up and its fault (with the
/// time the fault takes to settle).
fn unexplained(truth: &sim::truth::Truth, found: &[Spike], verbose: bool) -> Unexplained {
    let (start, end) = (instant(&truth.started), instant(&truth.ended));
    let mut out = Unexplained::default();
    let client_spikes = client_spikes(truth);
    for i in 1..=truth.servers {
        let consumer = format!("srv-{i}");
        let faults: Vec<(i64, i64)> = truth
            .faults
            .iter()
            .filter(|f| f.servers.contains(&consumer))
            .map(|f| (f.start_ns - 2 * WINDOW_NS, f.end_ns + SETTLE_NS))
            .collect();
        out.healthy_ns += end - start - WARMUP_NS - faults.iter().map(|(a, b)| b - a).sum::<i64>();
        for sp in found.iter().filter(|sp| sp.consumer == *consumer) {
            let (from, to) = span(sp);
            if faults.iter().any(|&(a, b)| from < b && to > a) {
                continue;
            }
            let stall = truth
                .stalls
                .iter()
                .filter(|p| p.server == consumer && p.end_ns > from - WINDOW_NS && p.start_ns < to)
                .map(|p| p.end_ns - p.start_ns)
                .max();
            // Other consumers spiking at the same time: the machine running the whole rig.
            let others = found
                .iter()
                .filter(|o| {
                    let (start, end) = span(o);
                    o.consumer != *consumer && o.consumer != "*" && start < to && end > from
                })
                .map(|o| o.consumer.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            // The server's own latency spiked then too (by the same detector, on the e2e
            // P99s it measured itself): the latency was real, though no fault was injected.
            let felt = client_spikes
                .iter()
                .find(|(server, sp)| {
                    *server == consumer
                        && sp.start_ns < to + WINDOW_NS
                        && sp.end_ns > from - WINDOW_NS
                })
                .map(|(_, sp)| sp.peak_p99_ns);
            let kind = match (stall, felt) {
                (Some(_), _) => {
                    out.during_stalls += 1;
                    "spike while the simulator stalled"
                }
                (None, Some(_)) => {
                    out.felt_by_clients += 1;
                    "spike the server's own latency shows too"
                }
                (None, None) => {
                    out.false_spikes += 1;
                    out.fleet_wide += u32::from(2 * (others + 1) >= truth.servers as usize);
                    "false spike"
                }
            };
            if !verbose {
                continue;
            }
            println!(
                "  {kind}: {consumer} {} – {} ({} windows, {others} other consumers at once) P99 {} µs (baseline {} µs, {} latency){}{}",
                sp.start,
                sp.end,
                sp.windows,
                sp.p99_us,
                sp.baseline_p99_us,
                sp.latency.as_str(),
                stall.map_or(String::new(), |ns| format!(
                    ", its frame up to {:.1} ms late",
                    ns as f64 / 1e6
                )),
                felt.map_or(String::new(), |ns| format!(
                    ", the server's own e2e P99 up to {:.1} ms",
                    ns as f64 / 1e6
                ))
            );
        }
    }
    out
}

/// A server's own e2e P99 per second before and during `[from, to)`, in words: the median
/// window and the median absolute deviation over the minute before, the median window during.
fn own_latency(truth: &sim::truth::Truth, server: &str, from: i64, to: i64) -> String {
    let p99s = |a: i64, b: i64| -> Vec<f64> {
        let mut v: Vec<f64> = truth
            .client_windows
            .iter()
            .filter(|w| w.server == server && w.start_ns >= a && w.start_ns < b)
            .map(|w| w.e2e_p99_us / 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let before = p99s(from - 60 * WINDOW_NS, from);
    let m = median(&before);
    let mut deviation: Vec<f64> = before.iter().map(|p| (p - m).abs()).collect();
    deviation.sort_by(f64::total_cmp);
    format!(
        "the server's own e2e P99: {m:.1} ms ± {:.1} (MAD) the minute before, {:.1} ms during",
        median(&deviation),
        median(&p99s(from, to))
    )
}

/// Spikes of each server's own e2e latency (the truth's client windows), found by ackscope's
/// detector with its default settings.
fn client_spikes(truth: &sim::truth::Truth) -> Vec<(String, detect::Spike)> {
    let mut by_server: BTreeMap<&str, Vec<WindowP99>> = BTreeMap::new();
    for w in &truth.client_windows {
        by_server.entry(&w.server).or_default().push(WindowP99 {
            start_ns: w.start_ns,
            end_ns: w.start_ns + WINDOW_NS,
            p99_ns: (w.e2e_p99_us * 1_000.0) as u64,
            samples: w.acks,
        });
    }
    by_server
        .into_iter()
        .flat_map(|(server, mut windows)| {
            windows.sort_by_key(|w| w.start_ns);
            find_spikes(&windows, &SpikeConfig::default())
                .into_iter()
                .map(move |sp| (server.to_string(), sp))
        })
        .collect()
}

#[derive(Default)]
struct Unexplained {
    false_spikes: u32,
    /// False spikes while at least half the fleet spiked.
    fleet_wide: u32,
    during_stalls: u32,
    /// Spikes the server's own latency shows too.
    felt_by_clients: u32,
    healthy_ns: i64,
}

impl std::ops::AddAssign for Unexplained {
    fn add_assign(&mut self, o: Self) {
        self.false_spikes += o.false_spikes;
        self.fleet_wide += o.fleet_wide;
        self.during_stalls += o.during_stalls;
        self.felt_by_clients += o.felt_by_clients;
        self.healthy_ns += o.healthy_ns;
    }
}

/// How the simulated fleet itself kept time.
fn print_fleet(truth: &sim::truth::Truth) {
    println!(
        "{}: {} frames, frame start lateness P99 {:.2} ms, max {:.2} ms",
        truth.scenario,
        truth.fleet.frames,
        truth.fleet.frame_jitter_p99_us / 1e3,
        truth.fleet.frame_jitter_max_us / 1e3
    );
}

/// Scores one run's spikes against its truth: each faulty consumer of each fault is one case.
fn score(
    truth: &sim::truth::Truth,
    found: &[Spike],
    scores: &mut BTreeMap<String, Score>,
    verbose: bool,
) {
    let mut calibrated = std::collections::HashSet::new();
    for f in &truth.faults {
        for consumer in &f.servers {
            let score = scores.entry(f.kind.clone()).or_default();
            score.faults += 1;
            let visible = f.start_ns
                + if f.kind == "packet_loss" {
                    WINDOW_NS
                } else {
                    0
                };
            // On by then: begun no later than 2 windows after the fault can be seen, and not
            // over before the fault began (a spike may start early when a blip merges into it).
            let hit = found.iter().find(|sp| {
                let (start, end) = span(sp);
                sp.consumer == *consumer && start <= visible + 2 * WINDOW_NS && end > f.start_ns
            });
            let Some(sp) = hit else {
                if !verbose {
                    continue;
                }
                let of_consumer: Vec<String> = found
                    .iter()
                    .filter(|sp| sp.consumer == *consumer)
                    .map(|sp| format!("{} ({})", sp.start, sp.latency.as_str()))
                    .collect();
                println!(
                    "{} {:<18} {consumer} → not detected (fault at {}; its spikes: {of_consumer:?}; {})",
                    truth.scenario,
                    f.kind,
                    f.start,
                    own_latency(truth, consumer, f.start_ns, f.end_ns)
                );
                continue;
            };
            score.detected += 1;
            // Two faults on one server at once are two roots: the spike's first cause is
            // right when it is either's (each fault still needs its own in the top 3).
            let roots: Vec<Cause> = truth
                .faults
                .iter()
                .filter(|g| {
                    g.servers.contains(consumer) && g.start_ns < f.end_ns && f.start_ns < g.end_ns
                })
                .map(|g| g.cause)
                .collect();
            // Calibration: of the root causes given with a confidence, how many are right;
            // once per spike (two faults on one server share theirs).
            let first_time = calibrated.insert((sp.consumer.clone(), sp.start.clone()));
            for c in sp.causes.iter().filter(|c| {
                first_time
                    && c.caused_by.is_none()
                    && c.cause != Cause::Unknown
                    && c.confidence > 0.0
            }) {
                let bucket = ((c.confidence * 10.0) as usize).min(9);
                score.given[bucket] += 1;
                score.right[bucket] += u32::from(roots.contains(&c.cause));
            }
            let causes: Vec<Cause> = sp.causes.iter().map(|c| c.cause).collect();
            score.top1 += u32::from(causes.first().is_some_and(|c| roots.contains(c)));
            score.top3 += u32::from(causes.iter().take(3).any(|c| *c == f.cause));
            if !verbose {
                continue;
            }
            println!(
                "{} {:<18} {consumer} → {:?} ({} latency, P99 {:.1} ms vs {:.1} ms, {} windows)",
                truth.scenario,
                f.kind,
                causes
                    .iter()
                    .take(3)
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>(),
                sp.latency.as_str(),
                sp.p99_us / 1e3,
                sp.baseline_p99_us / 1e3,
                sp.windows,
            );
            // Every cause in words when the first is wrong, or the fault's own is not in the
            // first three.
            let own_in_top3 = causes.iter().take(3).any(|c| *c == f.cause);
            if !causes.first().is_some_and(|c| roots.contains(c)) || !own_in_top3 {
                for c in &sp.causes {
                    println!("    {} {} {}", c.cause, c.confidence, c.summary);
                }
            }
        }
    }
}

pub fn main(args: &ScorecardArgs) {
    let ScorecardArgs {
        seeds,
        servers,
        scale,
        healthy_minutes,
        spikes,
        ..
    } = args;
    let (servers, scale, healthy_minutes) = (*servers, *scale, *healthy_minutes);
    let file = args
        .scenario
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let suite = RawScenario::from_file(&args.suite).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run from the repository's top, or give --suite)",
            args.suite.display()
        )
    });
    // The runs: a scenario file once through, or the built-in suite once per seed.
    let mut runs: Vec<RawScenario> = if file.is_empty() {
        seeds
            .iter()
            .map(|&seed| scenario(&suite, seed, servers, scale))
            .collect()
    } else {
        let text = std::fs::read_to_string(&file).expect("the scenario file");
        let mut s = RawScenario::from_toml(&text).expect("a valid scenario");
        s.repeat = false;
        vec![s]
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let binary = std::env::var_os("ACKSCOPE_NATS_SERVER_CURRENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| nats_server::find_binary().expect("nats-server"));
    if healthy_minutes > 0 {
        let seed = seeds.first().copied().unwrap_or(1) + 1_000;
        runs.push(healthy(&suite, seed, servers, healthy_minutes));
    }
    let results: Vec<_> = runs
        .into_iter()
        .map(|raw| {
            let run = run(&runtime, &binary, raw, spikes);
            print_fleet(&run.0);
            run
        })
        .collect();
    let runs = if file.is_empty() {
        format!(
            "seeds {seeds:?}, {servers} servers, scale {scale}, healthy run {healthy_minutes} min"
        )
    } else {
        file.clone()
    } + &format!("; [spikes] {spikes}");
    let (scores, unexplained_total) = tally(&results, 0, true);
    print_table(&scores, &unexplained_total);
    let mut pages = PageScore::default();
    for (truth, _, fired) in &results {
        pages.add(truth, fired);
    }
    pages.print(unexplained_total.healthy_ns as f64 / 3.6e12);
    println!("{runs}");
    // The same runs as if a spike needed one window more (`spikes.min_windows`): spikes that
    // short left out.
    let (scores, unexplained_total) = tally(&results, 4, false);
    println!("\nthe same spikes, those of 4 windows or more only:");
    print_table(&scores, &unexplained_total);
}

/// Scores every run, leaving out spikes of fewer than `min_windows` windows.
fn tally(
    results: &[Run],
    min_windows: usize,
    verbose: bool,
) -> (BTreeMap<String, Score>, Unexplained) {
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut total = Unexplained::default();
    for (truth, found, _) in results {
        let found: Vec<Spike> = found
            .iter()
            .filter(|sp| sp.windows >= min_windows)
            .cloned()
            .collect();
        score(truth, &found, &mut scores, verbose);
        total += unexplained(truth, &found, verbose);
    }
    (scores, total)
}

fn print_table(scores: &BTreeMap<String, Score>, unexplained: &Unexplained) {
    println!("\ncause (fault kind)   faults  recall  top-1  top-3");
    let mut total = Score::default();
    for (kind, s) in scores {
        println!(
            "{kind:<20} {:>6}  {:>5.0}%  {:>4.0}%  {:>4.0}%",
            s.faults,
            100.0 * s.detected as f64 / s.faults as f64,
            100.0 * s.top1 as f64 / s.detected.max(1) as f64,
            100.0 * s.top3 as f64 / s.detected.max(1) as f64
        );
        total.add(s);
    }
    println!(
        "all                  {:>6}  {:>5.0}%  {:>4.0}%  {:>4.0}%   ({}/{} detected, {} top-1, {} top-3)",
        total.faults,
        100.0 * total.detected as f64 / total.faults.max(1) as f64,
        100.0 * total.top1 as f64 / total.detected.max(1) as f64,
        100.0 * total.top3 as f64 / total.detected.max(1) as f64,
        total.detected,
        total.faults,
        total.top1,
        total.top3,
    );
    let (given, right): (u32, u32) = (total.given[9], total.right[9]);
    println!(
        "calibration (spikes matched to a fault only): root causes given with confidence >= 0.9: {right}/{given} right ({:.0}%)",
        100.0 * right as f64 / given.max(1) as f64
    );
    let buckets: Vec<String> = (0..10)
        .filter(|&b| total.given[b] > 0)
        .map(|b| {
            format!(
                "{:.1}-{:.1}: {}/{}",
                b as f64 / 10.0,
                (b + 1) as f64 / 10.0,
                total.right[b],
                total.given[b]
            )
        })
        .collect();
    println!(
        "  per confidence bucket (right/given): {}",
        buckets.join(", ")
    );
    let hours = (unexplained.healthy_ns as f64 / 3.6e12).max(1e-9);
    println!(
        "healthy traffic: {:.2} consumer-hours; false spikes {} ({:.2} per consumer-hour; {} of them while half the fleet or more spiked); real but not injected: {} while the simulator stalled, {} more the servers' own latency shows ({:.2} per consumer-hour together)",
        hours,
        unexplained.false_spikes,
        unexplained.false_spikes as f64 / hours,
        unexplained.fleet_wide,
        unexplained.during_stalls,
        unexplained.felt_by_clients,
        (unexplained.during_stalls + unexplained.felt_by_clients) as f64 / hours,
    );
}
