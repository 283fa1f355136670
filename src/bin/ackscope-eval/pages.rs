//! The scorecard's pages: which faults `ackscope serve` paged for, how soon, with which cause,
//! and what it paged for with no fault behind it.
//!
//! When Debian's `prometheus-alertmanager` is installed (or `ACKSCOPE_ALERTMANAGER` names an
//! Alertmanager binary), a real one runs beside `serve` (gossip off, a temp store) and a page's
//! time is when it first shows in Alertmanager's `GET /api/v2/alerts`, read every 500 ms; without
//! one, it is the alert's `fired_at` in ackscope's `GET /api/v1/alerts`.
//!
//! - A fault on one consumer is **paged** when an `AckP99Regression` on that consumer fires from
//!   the fault's start to 15 s after its end; the **time to page** runs from the moment the
//!   fault can first be seen (its onset; for lost acks, its onset plus one window). Not paged
//!   on its consumer but paged fleet-wide (`*`) then with the fault's cause, it is paged
//!   **fleet-wide only** (a load burst that slows the whole machine), and that page is not
//!   false.
//! - A fault on three servers or more is a **machine-wide event**: every P99 page that fires in
//!   its span counts towards it (target: one).
//! - Any other P99 page is **false**, counted against the healthy consumer-time of the runs;
//!   those that fired within 20 s of a stall of the simulator itself (a frame of the page's
//!   server, or of any server for `*`, started ≥ 4 ms late: the acks really were late) are
//!   counted apart. Pages of the other rules (burn rates, redelivery, ordering) outside every
//!   fault are listed apart.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ackscope::analyze::alerts::Alert;
use ackscope::sim;

const P99: &str = "AckP99Regression";
const WINDOW_NS: i64 = 1_000_000_000;
/// How long after a fault ends a page may still be its own.
const SETTLE_NS: i64 = 15_000_000_000;
/// How long before a page a stall of the simulator may have caused it: its `for` and windows.
const STALL_REACH_NS: i64 = 20_000_000_000;

fn unix_ns(t: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(t).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i64)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn get(agent: &ureq::Agent, url: &str) -> Option<String> {
    let mut response = agent.get(url).call().ok()?;
    if response.status() != 200 {
        return None;
    }
    response.body_mut().read_to_string().ok()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// An alert's identity at one firing: rule, stream, consumer, when it fired (Unix ns).
type Firing = (String, String, String, i64);

/// A real Alertmanager, killed on drop; it remembers when each firing first showed in its API.
pub struct Alertmanager {
    _process: ackscope::alertmanager::Alertmanager,
    pub url: String,
    agent: ureq::Agent,
    arrived: HashMap<Firing, i64>,
}

impl Alertmanager {
    /// Starts one when it can; `None` (said once on stderr) when not.
    pub fn start() -> Option<Self> {
        let process =
            match ackscope::alertmanager::Alertmanager::start(&ackscope::alertmanager::binary()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}: pages are timed by ackscope's own fired_at");
                    return None;
                }
            };
        Some(Alertmanager {
            url: process.url(),
            _process: process,
            agent: agent(),
            arrived: HashMap::new(),
        })
    }

    /// Reads the alerts it holds and notes the ones it shows for the first time.
    pub fn poll(&mut self) {
        let now = now_ns();
        let Some(body) = get(&self.agent, &format!("{}/api/v2/alerts", self.url)) else {
            return;
        };
        let Ok(alerts) = serde_json::from_str::<Vec<serde_json::Value>>(&body) else {
            return;
        };
        for a in alerts {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            let Some(starts) = a["startsAt"].as_str().and_then(unix_ns) else {
                continue;
            };
            // Whole milliseconds: Alertmanager answers with fewer digits than it was sent.
            let key = (
                label("alertname"),
                label("stream"),
                label("consumer"),
                starts / 1_000_000,
            );
            self.arrived.entry(key).or_insert(now);
        }
    }

    fn arrival(&self, alert: &Alert, fired_ns: i64) -> Option<i64> {
        let label = |k: &str| alert.labels.get(k).cloned().unwrap_or_default();
        let key = (
            alert.alertname.clone(),
            label("stream"),
            label("consumer"),
            fired_ns / 1_000_000,
        );
        self.arrived.get(&key).copied()
    }
}

/// Every alert `serve` fired, as read from `GET /api/v1/alerts` over a run.
#[derive(Default)]
pub struct Fired(BTreeMap<(String, String), Alert>);

impl Fired {
    /// Keeps the fired alerts of one read, each firing once (the latest state).
    pub fn record(&mut self, body: &str) {
        let alerts: Vec<Alert> = serde_json::from_str(body).expect("GET /api/v1/alerts parses");
        for a in alerts {
            if let Some(fired) = a.fired_at.clone() {
                self.0.insert((a.fingerprint.clone(), fired), a);
            }
        }
    }

    /// The pages, oldest first: timed by their arrival in Alertmanager when there is one.
    pub fn pages(&self, am: Option<&Alertmanager>) -> Vec<Page> {
        let mut pages: Vec<Page> = self
            .0
            .values()
            .filter_map(|a| {
                let fired_ns = unix_ns(a.fired_at.as_deref()?)?;
                let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
                Some(Page {
                    rule: a.alertname.clone(),
                    consumer: label("consumer"),
                    cause: label("cause"),
                    severity: label("severity"),
                    fired_ns,
                    arrived_ns: am.and_then(|am| am.arrival(a, fired_ns)),
                })
            })
            .collect();
        pages.sort_by_key(|p| p.fired_ns);
        pages
    }
}

/// One alert that fired.
#[derive(Debug, Clone)]
pub struct Page {
    pub rule: String,
    pub consumer: String,
    pub cause: String,
    pub severity: String,
    pub fired_ns: i64,
    /// When Alertmanager first showed it, when one ran.
    pub arrived_ns: Option<i64>,
}

impl Page {
    fn at_ns(&self) -> i64 {
        self.arrived_ns.unwrap_or(self.fired_ns)
    }
}

/// Pages per fault kind, and those with no fault behind them.
#[derive(Default, Debug)]
pub struct PageScore {
    /// Per fault kind: faults, paged, paged with the fault's cause first, the times to page (ms),
    /// paged only fleet-wide with the fault's cause.
    kinds: BTreeMap<String, (u32, u32, u32, Vec<f64>, u32)>,
    /// Per machine-wide event: how many P99 pages it gave, and their causes.
    events: Vec<(String, Vec<String>)>,
    false_pages: Vec<String>,
    /// False P99 pages within [`STALL_REACH_NS`] after a stall of the simulator.
    during_stalls: Vec<String>,
    other_outside: Vec<String>,
    /// Pages that reached Alertmanager, of all pages.
    arrived: (u32, u32),
}

/// The fault windows a page may belong to: from the fault's start to `SETTLE_NS` after its end.
fn within(f: &sim::truth::InjectedFault, t: i64) -> bool {
    t >= f.start_ns && t <= f.end_ns + SETTLE_NS
}

/// A fleet-wide P99 page in `f`'s span naming `f`'s cause: the fault paged at a wider scope.
fn wider(f: &sim::truth::InjectedFault, p: &Page) -> bool {
    p.rule == P99 && p.consumer == "*" && p.cause == f.cause.as_str() && within(f, p.fired_ns)
}

impl PageScore {
    pub fn add(&mut self, truth: &sim::truth::Truth, pages: &[Page]) {
        let machine_wide = |f: &sim::truth::InjectedFault| f.servers.len() >= 3;
        for p in pages {
            self.arrived.1 += 1;
            self.arrived.0 += u32::from(p.arrived_ns.is_some());
        }
        for f in truth.faults.iter().filter(|f| !machine_wide(f)) {
            for consumer in &f.servers {
                let entry = self.kinds.entry(f.kind.clone()).or_default();
                entry.0 += 1;
                let visible = f.start_ns
                    + if f.kind == "packet_loss" {
                        WINDOW_NS
                    } else {
                        0
                    };
                let Some(p) = pages
                    .iter()
                    .find(|p| p.rule == P99 && p.consumer == *consumer && within(f, p.fired_ns))
                else {
                    if let Some(p) = pages.iter().find(|p| wider(f, p)) {
                        entry.4 += 1;
                        println!(
                            "{} {:<18} {consumer} → paged fleet-wide only, after {:.1} s, cause {}",
                            truth.scenario,
                            f.kind,
                            (p.at_ns() - visible) as f64 / 1e9,
                            p.cause
                        );
                    } else {
                        println!("{} {:<18} {consumer} → not paged", truth.scenario, f.kind);
                    }
                    continue;
                };
                entry.1 += 1;
                entry.2 += u32::from(p.cause == f.cause.as_str());
                let ms = (p.at_ns() - visible) as f64 / 1e6;
                entry.3.push(ms);
                println!(
                    "{} {:<18} {consumer} → paged after {:.1} s, cause {}, {}{}",
                    truth.scenario,
                    f.kind,
                    ms / 1e3,
                    p.cause,
                    p.severity,
                    if p.arrived_ns.is_some() {
                        " (as Alertmanager showed it)"
                    } else {
                        ""
                    }
                );
            }
        }
        for f in truth.faults.iter().filter(|f| machine_wide(f)) {
            let causes: Vec<String> = pages
                .iter()
                .filter(|p| p.rule == P99 && within(f, p.fired_ns))
                .map(|p| format!("{} ({})", p.consumer, p.cause))
                .collect();
            println!(
                "{} machine-wide {} on {} servers at {} → {} P99 pages {causes:?}",
                truth.scenario,
                f.kind,
                f.servers.len(),
                f.start,
                causes.len()
            );
            self.events.push((f.kind.clone(), causes));
        }
        for p in pages {
            // A page is its fault's when the fault touched its consumer (or, for `*`, was
            // machine-wide) and it fired within the fault's span.
            let explained = truth.faults.iter().any(|f| {
                within(f, p.fired_ns)
                    && (machine_wide(f)
                        || f.servers.contains(&p.consumer)
                        || p.rule != P99
                        || wider(f, p))
            });
            if explained {
                continue;
            }
            let at = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_nanos(p.fired_ns as u64),
            );
            let what = format!(
                "{} {} {} at {at} ({})",
                truth.scenario, p.rule, p.consumer, p.cause
            );
            // The simulator itself stalled just before: its acks really were late.
            let stalled = truth.stalls.iter().any(|s| {
                (p.consumer == "*" || s.server == p.consumer)
                    && s.end_ns > p.fired_ns - STALL_REACH_NS
                    && s.start_ns < p.fired_ns
            });
            println!(
                "  page with no fault behind it{}: {what}",
                if stalled {
                    " (the simulator stalled before it)"
                } else {
                    ""
                }
            );
            if p.rule == P99 && stalled {
                self.during_stalls.push(what);
            } else if p.rule == P99 {
                self.false_pages.push(what);
            } else {
                self.other_outside.push(what);
            }
        }
    }

    /// The table, with the healthy consumer-time the false pages are counted against.
    pub fn print(&self, healthy_hours: f64) {
        println!(
            "\nfault kind           faults  paged  cause right  time to page (s): median  max  fleet-wide only"
        );
        let (mut faults, mut paged, mut right, mut fleet, mut all) = (0, 0, 0, 0, Vec::new());
        for (kind, (n, p, r, times, w)) in &self.kinds {
            let mut t = times.clone();
            t.sort_by(f64::total_cmp);
            println!(
                "{kind:<20} {n:>6}  {p:>5}  {r:>11}  {:>24.1}  {:>4.1}  {w:>15}",
                t.get(t.len() / 2).copied().unwrap_or(f64::NAN) / 1e3,
                t.last().copied().unwrap_or(f64::NAN) / 1e3
            );
            (faults, paged, right, fleet) = (faults + n, paged + p, right + r, fleet + w);
            all.extend(t);
        }
        all.sort_by(f64::total_cmp);
        println!(
            "all                  {faults:>6}  {paged:>5}  {right:>11}  {:>24.1}  {:>4.1}  {fleet:>15}",
            all.get(all.len() / 2).copied().unwrap_or(f64::NAN) / 1e3,
            all.last().copied().unwrap_or(f64::NAN) / 1e3
        );
        for (kind, causes) in &self.events {
            println!(
                "machine-wide {kind}: {} P99 page(s) {causes:?}",
                causes.len()
            );
        }
        println!(
            "false P99 pages: {} over {healthy_hours:.2} healthy consumer-hours, and {} more after a stall of the simulator; other rules' pages with no fault behind them: {}; pages seen in Alertmanager: {}/{}",
            self.false_pages.len(),
            self.during_stalls.len(),
            self.other_outside.len(),
            self.arrived.0,
            self.arrived.1
        );
    }
}
