//! Where alerts go: Prometheus Alertmanager (its v2 API), webhooks (a JSON body, optionally
//! signed with HMAC-SHA256) and a NATS subject per alert.
//!
//! Each HTTP receiver has a thread of its own and a bounded queue: a receiver that is down or
//! slow holds up only itself, sends are retried with backoff, and what does not fit in its
//! queue is dropped and counted ([`NotifyStats`]). Nothing here waits on the caller's side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;

use crate::analyze::alerts::config::Receivers;
use crate::analyze::alerts::{Alert, Notice, State};
use crate::model::rfc3339;
use crate::telemetry::ClientEvents;

/// What the receivers did, since start.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Alerts delivered (one per alert per receiver).
    pub sent: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
    /// Alerts given up after every retry failed.
    pub failed: AtomicU64,
    /// Alerts dropped because a receiver's queue was full.
    pub dropped: AtomicU64,
}

/// Attempts per alert (the first and the retries) and the first backoff, doubled each time.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Alerts being published on NATS at once, at most.
const NATS_IN_FLIGHT: usize = 256;
/// How long one HTTP attempt (or one NATS publish) may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The header a signed webhook body carries: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Ackscope-Signature";

/// Hands alerts to every receiver.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Vec<SyncSender<Arc<Vec<Notice>>>>,
    nats: Option<(Arc<ClientEvents>, String)>,
    /// NATS publishes in flight at most: while NATS is away they wait, and more are dropped.
    nats_slots: Arc<tokio::sync::Semaphore>,
    pub stats: Arc<NotifyStats>,
}

/// An alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<&'a str>,
}

/// A webhook's body, and what goes on NATS: the alert with its status and times.
#[derive(Debug, Serialize)]
pub struct AlertMessage<'a> {
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub starts_at: String,
    pub ends_at: Option<String>,
    #[serde(flatten)]
    pub alert: &'a Alert,
}

impl<'a> AlertMessage<'a> {
    pub fn of(n: &'a Notice) -> Self {
        let resolved = n.alert.state == State::Resolved;
        Self {
            status: if resolved { "resolved" } else { "firing" },
            starts_at: rfc3339(n.starts_at_ns),
            ends_at: resolved.then(|| rfc3339(n.ends_at_ns)),
            alert: &n.alert,
        }
    }
}

/// Alertmanager's body for `notices`.
pub fn alertmanager_body(notices: &[Notice]) -> Vec<u8> {
    let alerts: Vec<PostableAlert> = notices
        .iter()
        .map(|n| PostableAlert {
            labels: &n.alert.labels,
            annotations: &n.alert.annotations,
            starts_at: rfc3339(n.starts_at_ns),
            ends_at: rfc3339(n.ends_at_ns),
            generator_url: n.alert.annotations.get("dashboard_url").map(String::as_str),
        })
        .collect();
    serde_json::to_vec(&alerts).expect("alerts serialize")
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A NATS subject token for a name: `*` (all) is `_all`, anything a token may not hold is `_`.
fn token(name: &str) -> String {
    if name == "*" {
        return "_all".into();
    }
    name.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `<prefix>.<rule>.<stream>.<consumer>` for `alert`.
pub fn subject(prefix: &str, alert: &Alert) -> String {
    let label = |k: &str| alert.labels.get(k).map_or("_all".to_string(), |v| token(v));
    format!(
        "{prefix}.{}.{}.{}",
        token(&alert.alertname),
        label("stream"),
        label("consumer")
    )
}

enum Target {
    Alertmanager(String),
    Webhook(String, Option<crate::units::Secret>),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Alertmanager(url) | Target::Webhook(url, _) => url,
        }
    }

    /// The requests for `notices`: one for Alertmanager, one per alert for a webhook.
    fn requests(&self, notices: &[Notice]) -> Vec<(String, Vec<u8>, Option<String>, usize)> {
        match self {
            Target::Alertmanager(base) => {
                vec![(
                    format!("{base}/api/v2/alerts"),
                    alertmanager_body(notices),
                    None,
                    notices.len(),
                )]
            }
            Target::Webhook(url, secret) => notices
                .iter()
                .map(|n| {
                    let body = serde_json::to_vec(&AlertMessage::of(n)).expect("alerts serialize");
                    let signed = secret
                        .as_ref()
                        .map(|s| signature(s.expose().as_bytes(), &body));
                    (url.clone(), body, signed, 1)
                })
                .collect(),
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8], signed: Option<&str>) -> Result<(), Failure> {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    if let Some(signature) = signed {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match request.send(body) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(Failure {
            text: format!("HTTP {}", response.status().as_u16()),
            // The receiver refused the body itself: sending it again changes nothing.
            again: response.status().is_server_error() || response.status().as_u16() == 429,
        }),
        Err(e) => Err(Failure {
            text: e.to_string(),
            again: true,
        }),
    }
}

/// A failed POST: why, and whether another attempt may succeed.
struct Failure {
    text: String,
    again: bool,
}

/// One receiver's thread: sends what its queue holds, each with retries, until the queue
/// closes.
fn run(target: Target, queue: Receiver<Arc<Vec<Notice>>>, stats: Arc<NotifyStats>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    for notices in queue {
        for (url, body, signed, alerts) in target.requests(&notices) {
            let mut backoff = FIRST_BACKOFF;
            for attempt in 1..=ATTEMPTS {
                match post(&agent, &url, &body, signed.as_deref()) {
                    Ok(()) => {
                        stats.sent.fetch_add(alerts as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(Failure {
                        text: error,
                        again: true,
                    }) if attempt < ATTEMPTS => {
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(receiver = target.name(), %error, attempt, "sending alerts failed; trying again");
                        std::thread::sleep(backoff);
                        backoff *= 2;
                    }
                    Err(Failure { text: error, .. }) => {
                        stats.failed.fetch_add(alerts as u64, Ordering::Relaxed);
                        tracing::error!(receiver = target.name(), %error, alerts, attempt, "alerts not delivered");
                        break;
                    }
                }
            }
        }
    }
}

impl Notifier {
    /// Starts a thread per HTTP receiver; alerts are published on NATS, with the client
    /// `nats` holds once connected, when a subject prefix is set.
    pub fn start(
        receivers: &Receivers,
        nats: Option<Arc<ClientEvents>>,
        stats: Arc<NotifyStats>,
    ) -> Self {
        let targets = receivers
            .alertmanager
            .iter()
            .map(|u| Target::Alertmanager(u.clone()))
            .chain(
                receivers
                    .webhooks
                    .iter()
                    .map(|u| Target::Webhook(u.clone(), receivers.webhook_secret.clone())),
            );
        let mut queues = Vec::new();
        for target in targets {
            let (tx, rx) = std::sync::mpsc::sync_channel(receivers.queue);
            let stats = stats.clone();
            let spawned = std::thread::Builder::new()
                .name("ackscope-notify".into())
                .spawn(move || run(target, rx, stats));
            match spawned {
                Ok(_) => queues.push(tx),
                Err(error) => {
                    tracing::error!(%error, "cannot start a thread for an alert receiver")
                }
            }
        }
        let nats = nats.zip(receivers.nats_subject_prefix.clone());
        Self {
            queues,
            nats,
            nats_slots: Arc::new(tokio::sync::Semaphore::new(NATS_IN_FLIGHT)),
            stats,
        }
    }

    /// Receivers configured (NATS included).
    pub fn receivers(&self) -> usize {
        self.queues.len() + usize::from(self.nats.is_some())
    }

    /// Hands `notices` to every receiver without waiting.
    pub fn send(&self, notices: Vec<Notice>) {
        if notices.is_empty() {
            return;
        }
        let notices = Arc::new(notices);
        for queue in &self.queues {
            if let Err(TrySendError::Full(n) | TrySendError::Disconnected(n)) =
                queue.try_send(notices.clone())
            {
                self.stats
                    .dropped
                    .fetch_add(n.len() as u64, Ordering::Relaxed);
            }
        }
        if let Some((events, prefix)) = &self.nats {
            let Some(client) = events.client() else {
                self.stats
                    .failed
                    .fetch_add(notices.len() as u64, Ordering::Relaxed);
                return;
            };
            for n in notices.iter() {
                let subject = subject(prefix, &n.alert);
                let body = serde_json::to_vec(&AlertMessage::of(n)).expect("alerts serialize");
                // The client's publish waits while NATS is away: a bounded number wait, each
                // for TIMEOUT at most; beyond them alerts are dropped, counted.
                let Ok(slot) = self.nats_slots.clone().try_acquire_owned() else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let client = client.clone();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(TIMEOUT, client.publish(subject, body.into())).await
                    {
                        Ok(Ok(())) => stats.sent.fetch_add(1, Ordering::Relaxed),
                        _ => stats.failed.fetch_add(1, Ordering::Relaxed),
                    };
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(stream: &str, consumer: &str) -> Alert {
        Alert {
            fingerprint: "0".into(),
            alertname: "AckP99Regression".into(),
            state: State::Firing,
            since: String::new(),
            active_at: String::new(),
            fired_at: None,
            resolved_at: None,
            value: 1.0,
            labels: BTreeMap::from([
                ("stream".into(), stream.into()),
                ("consumer".into(), consumer.into()),
            ]),
            annotations: BTreeMap::from([("dashboard_url".into(), "http://h/".into())]),
        }
    }

    #[test]
    fn subjects_hold_only_literal_tokens() {
        assert_eq!(
            subject("ackscope.alerts", &alert("GAME", "srv-1")),
            "ackscope.alerts.AckP99Regression.GAME.srv-1"
        );
        assert_eq!(
            subject("a", &alert("*", "*")),
            "a.AckP99Regression._all._all"
        );
        assert_eq!(
            subject("a", &alert("G A", "x.y>")),
            "a.AckP99Regression.G_A.x_y_"
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn alertmanager_gets_labels_annotations_and_times() {
        let n = Notice {
            alert: alert("GAME", "srv-1"),
            starts_at_ns: 0,
            ends_at_ns: 240_000_000_000,
        };
        let body: serde_json::Value = serde_json::from_slice(&alertmanager_body(&[n])).unwrap();
        assert_eq!(body[0]["labels"]["consumer"], "srv-1");
        assert_eq!(body[0]["startsAt"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(body[0]["endsAt"], "1970-01-01T00:04:00.000000000Z");
        assert_eq!(body[0]["generatorURL"], "http://h/");
    }
}
