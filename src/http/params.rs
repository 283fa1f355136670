//! Query parameters shared by the API routes: parsed, checked, and resolved against what the
//! collector has seen. Every error names its parameter.

use std::collections::HashMap;

use crate::aggregate::rebin::{self, Filter, Latency};
use crate::clocks::{ClockSource, PhaseClocks};
use crate::collector::Collector;
use crate::model::ConsumerId;
use crate::names::is_jetstream_name;
use crate::render::heatmap::ColorScale;
use crate::tick::{Frame, FrameClock, Period};
use crate::units::{duration_ns, parse_duration};

use super::ApiError;

/// Most pixels a picture may have on a side; larger requests are capped.
pub const MAX_WIDTH: u32 = 4000;
pub const MAX_HEIGHT: u32 = 3000;
/// Most phase bins or time columns a request may ask for.
pub const MAX_BINS: u32 = 2000;

/// Parameters the report and both heatmaps accept.
pub const RANGE_PARAMS: &[&str] = &[
    "stream",
    "consumer",
    "domain",
    "from",
    "to",
    "latency",
    "tick",
    "phase_bins",
];
/// Parameters only the heatmaps accept.
pub const PICTURE_PARAMS: &[&str] = &["width", "height", "scale", "max_latency"];

/// The parsed query of one request.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub stream: Option<String>,
    pub consumer: Option<String>,
    /// The JetStream domain; without it, the names match in every domain.
    pub domain: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub latency: Option<Latency>,
    /// A period for every consumer, overriding their own clocks.
    pub tick: Option<Period>,
    pub phase_bins: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub scale: Option<ColorScale>,
    pub max_latency_ns: Option<u64>,
}

/// Parses an instant: RFC 3339, `now`, or `-<duration>` before `now_ns`.
pub fn parse_instant(value: &str, now_ns: i64) -> Result<i64, String> {
    if value == "now" {
        return Ok(now_ns);
    }
    if let Some(ago) = value.strip_prefix('-') {
        // Instants stay between 1970 and 2262 (what i64 nanoseconds hold), so that no span
        // between two of them overflows.
        let d = parse_duration(ago)?;
        return now_ns
            .checked_sub(i64::try_from(duration_ns(d)).unwrap_or(i64::MAX))
            .filter(|t| *t >= 0)
            .ok_or_else(|| "before 1970".to_string());
    }
    let t = humantime::parse_rfc3339_weak(value)
        .map_err(|_| "expected RFC 3339 (2026-11-26T10:00:00Z), `now` or `-5m`".to_string())?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_string())?;
    i64::try_from(d.as_nanos()).map_err(|_| "too far in the future".to_string())
}

impl Params {
    /// Parses `query`, accepting only the parameters in `allowed` (and `_`, a cache buster).
    pub fn parse(
        query: &HashMap<String, String>,
        allowed: &[&[&str]],
        now_ns: i64,
    ) -> Result<Self, ApiError> {
        let mut p = Params::default();
        for (key, value) in query {
            if key == "_" {
                continue;
            }
            if !allowed.iter().any(|set| set.contains(&key.as_str())) {
                return Err(ApiError::bad(key, "unknown parameter"));
            }
            let bad = |message: String| ApiError::bad(key, format!("{value:?}: {message}"));
            match key.as_str() {
                "stream" => p.stream = Some(name(value).map_err(bad)?),
                "consumer" => p.consumer = Some(name(value).map_err(bad)?),
                "domain" => p.domain = Some(name(value).map_err(bad)?),
                "from" => p.from_ns = Some(parse_instant(value, now_ns).map_err(bad)?),
                "to" => p.to_ns = Some(parse_instant(value, now_ns).map_err(bad)?),
                "latency" => {
                    p.latency = Some(match value.as_str() {
                        "ack" => Latency::Ack,
                        "e2e" => Latency::E2e,
                        _ => return Err(bad("expected `ack` or `e2e`".into())),
                    })
                }
                "tick" => {
                    let period = Period::parse(value).map_err(bad)?;
                    Frame::new(period, 0).map_err(|e| bad(e.to_string()))?;
                    p.tick = Some(period);
                }
                "phase_bins" => p.phase_bins = Some(count(value, 1, MAX_BINS).map_err(bad)?),
                "width" => {
                    p.width = Some(
                        count(value, 1, u32::MAX)
                            .map_err(bad)?
                            .clamp(300, MAX_WIDTH),
                    )
                }
                "height" => {
                    p.height = Some(
                        count(value, 1, u32::MAX)
                            .map_err(bad)?
                            .clamp(200, MAX_HEIGHT),
                    )
                }
                "scale" => {
                    p.scale = Some(match value.as_str() {
                        "log" => ColorScale::Log,
                        "linear" => ColorScale::Linear,
                        _ => return Err(bad("expected `log` or `linear`".into())),
                    })
                }
                "max_latency" => {
                    let ns = parse_duration(value).map(duration_ns).map_err(bad)?;
                    if !(100_000..=3_600_000_000_000).contains(&ns) {
                        return Err(bad("must be between 100us and 1h".into()));
                    }
                    p.max_latency_ns = Some(ns);
                }
                _ => return Err(ApiError::bad(key, "unknown parameter")),
            }
        }
        if p.consumer.is_some() && p.stream.is_none() {
            return Err(ApiError::bad("consumer", "needs `stream` too"));
        }
        if p.domain.is_some() && p.stream.is_none() {
            return Err(ApiError::bad("domain", "needs `stream` too"));
        }
        if let (Some(from), Some(to)) = (p.from_ns, p.to_ns)
            && from >= to
        {
            return Err(ApiError::bad("from", "must be before `to`"));
        }
        Ok(p)
    }

    /// The consumers the request is about (`None`: all), or 404 for a name never seen.
    pub fn consumers(&self, c: &Collector) -> Result<Option<Vec<ConsumerId>>, ApiError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        let ids: Vec<ConsumerId> = c
            .consumers()
            .filter(|(id, s, name)| {
                s == stream
                    && self.consumer.as_ref().is_none_or(|want| want == name)
                    && self
                        .domain
                        .as_deref()
                        .is_none_or(|want| c.names().consumer_domain(*id) == Some(want))
            })
            .map(|(id, _, _)| id)
            .collect();
        if ids.is_empty() {
            let domain = self
                .domain
                .as_ref()
                .map_or(String::new(), |d| format!(" in domain {d}"));
            return Err(ApiError::NotFound(match &self.consumer {
                Some(consumer) => format!("no consumer {stream}/{consumer}{domain} has been seen"),
                None => format!("no stream {stream}{domain} has been seen"),
            }));
        }
        Ok(Some(ids))
    }

    /// The range `[from, to)`: as given, else from the oldest retained sample to now.
    pub fn range(&self, c: &Collector, now_ns: i64) -> (i64, i64) {
        let to = self.to_ns.unwrap_or(now_ns.saturating_add(1));
        let from = self.from_ns.unwrap_or_else(|| {
            rebin::time_span(c.aggregator().ring())
                .map_or(to.saturating_sub(300_000_000_000), |(lo, _)| lo)
        });
        (from.min(to - 1), to)
    }

    /// How the request phases rows, in `default_bins` bins unless it says: with its `tick`,
    /// one clock for every consumer (the configured epoch); else each consumer's own.
    pub fn phase_view<'a>(
        &self,
        c: &'a Collector,
        ids: Option<&[ConsumerId]>,
        default_bins: u32,
    ) -> PhaseView<'a> {
        let configured = c.aggregator().clock();
        let bins = self.phase_bins.unwrap_or(default_bins);
        let clocks = c.aggregator().clocks();
        // Both were validated when parsed; the configured clock is valid.
        let with = |frame: Frame| {
            FrameClock::of(frame, bins, configured.phase_of()).unwrap_or(*configured)
        };
        if let Some(period) = self.tick {
            let shown = with(Frame {
                period,
                epoch_ns: configured.epoch_ns(),
            });
            return PhaseView {
                phases: PhaseClocks::one(clocks, &shown),
                shown,
                source: Some(ClockSource::Configured),
            };
        }
        // One consumer: its phases are shown in its own frame's milliseconds.
        let (frame, source) = match ids {
            Some([one]) => {
                let current = clocks.current(*one);
                (current.frame, Some(current.source))
            }
            _ => (*clocks.configured(), None),
        };
        let shown = with(frame);
        PhaseView {
            phases: PhaseClocks::own(clocks, &shown),
            shown,
            source,
        }
    }

    /// The row filter of the request.
    pub fn filter(&self, ids: Option<&[ConsumerId]>, from: i64, to: i64) -> Filter {
        Filter::new(ids, from, to, self.latency.unwrap_or(Latency::Ack))
    }
}

/// How a request phases rows, and the frame its phases are shown in.
pub struct PhaseView<'a> {
    pub phases: PhaseClocks<'a>,
    /// The frame whose milliseconds label the phases (and its bins).
    pub shown: FrameClock,
    /// Where the clock comes from when one clock phases every row; `None` when each
    /// consumer's own does.
    pub source: Option<ClockSource>,
}

impl PhaseView<'_> {
    /// Which clock, in words, for a picture's title.
    pub fn in_words(&self) -> String {
        match self.source {
            Some(source) => format!("{} clock", source.as_str()),
            None => "each consumer's own clock".to_string(),
        }
    }
}

/// A stream or consumer name.
fn name(value: &str) -> Result<String, String> {
    if !is_jetstream_name(value) {
        return Err("not a stream or consumer name".into());
    }
    Ok(value.to_string())
}

fn count(value: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = value
        .parse()
        .map_err(|_| "expected a whole number".to_string())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

/// Warnings about a range that the retained samples do not (fully) cover.
pub fn range_warnings(c: &Collector, from: i64, to: i64) -> Vec<String> {
    let mut warnings = ring_warnings(c, from, to);
    // Outages inside the range: what happened then was not seen.
    for (start, end) in c.nats_gaps() {
        if start < to && end.is_none_or(|e| e > from) {
            warnings.push(match end {
                Some(end) => format!(
                    "NATS was unreachable from {} to {} ({:.1} s): nothing was collected then",
                    crate::model::rfc3339(start),
                    crate::model::rfc3339(end),
                    (end - start) as f64 / 1e9
                ),
                None => format!(
                    "NATS is unreachable since {}: nothing is being collected",
                    crate::model::rfc3339(start)
                ),
            });
        }
    }
    warnings
}

fn ring_warnings(c: &Collector, from: i64, to: i64) -> Vec<String> {
    let ring = c.aggregator().ring();
    match rebin::time_span(ring) {
        None => vec!["no samples are retained yet".into()],
        Some((lo, hi)) if to <= lo || from > hi => vec![format!(
            "the range holds no retained samples: retained samples span {} to {}",
            crate::model::rfc3339(lo),
            crate::model::rfc3339(hi)
        )],
        Some((lo, _)) if from < lo && ring.overwritten() > 0 => vec![format!(
            "samples before {} are no longer retained (the sample ring holds the newest {})",
            crate::model::rfc3339(lo),
            ring.capacity()
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ALL: &[&[&str]] = &[RANGE_PARAMS, PICTURE_PARAMS];
    const NOW: i64 = 1_790_000_000_000_000_000;

    #[test]
    fn parses_every_parameter() {
        let p = Params::parse(
            &q(&[
                ("stream", "GAME"),
                ("consumer", "srv-1"),
                ("from", "-5m"),
                ("to", "now"),
                ("latency", "e2e"),
                ("tick", "16.667ms"),
                ("phase_bins", "64"),
                ("width", "99999"),
                ("scale", "linear"),
                ("max_latency", "1s"),
                ("_", "123"),
            ]),
            ALL,
            NOW,
        )
        .unwrap();
        assert_eq!(p.from_ns, Some(NOW - 300_000_000_000));
        assert_eq!(p.to_ns, Some(NOW));
        assert_eq!(p.latency, Some(Latency::E2e));
        assert_eq!(p.tick, Some(Period::from_ns(16_667_000)));
        assert_eq!(p.width, Some(MAX_WIDTH), "absurd sizes are capped");
        assert_eq!(p.scale, Some(ColorScale::Linear));
        let p = Params::parse(&q(&[("from", "2026-09-21T14:13:20Z")]), ALL, NOW).unwrap();
        assert_eq!(p.from_ns, Some(NOW));
    }

    #[test]
    fn errors_name_the_parameter() {
        let cases = [
            (("latency", "p99"), "latency"),
            (("tick", "0ms"), "tick"),
            (("tick", "fast"), "tick"),
            (("phase_bins", "0"), "phase_bins"),
            (("phase_bins", "x"), "phase_bins"),
            (("from", "yesterday"), "from"),
            (("from", "-5000000h"), "from"),
            (("to", "-600000000h"), "to"),
            (("from", "1969-12-31T23:59:59Z"), "from"),
            (("to", "9999-01-01T00:00:00Z"), "to"),
            (("scale", "cubic"), "scale"),
            (("max_latency", "1ns"), "max_latency"),
            (("stream", "a.b"), "stream"),
            (("colour", "red"), "colour"),
            (("consumer", "srv-1"), "consumer"),
            (("domain", "hub"), "domain"),
            (("domain", "a.b"), "domain"),
        ];
        for ((k, v), param) in cases {
            match Params::parse(&q(&[(k, v)]), ALL, NOW) {
                Err(ApiError::BadParam { param: got, .. }) => assert_eq!(got, param, "{k}={v}"),
                other => panic!("{k}={v}: expected a bad parameter, got {other:?}"),
            }
        }
        let err = Params::parse(&q(&[("from", "now"), ("to", "-1m")]), ALL, NOW).unwrap_err();
        assert!(matches!(err, ApiError::BadParam { param, .. } if param == "from"));
        let err = Params::parse(&q(&[("width", "10")]), &[RANGE_PARAMS], NOW).unwrap_err();
        assert!(matches!(err, ApiError::BadParam { param, .. } if param == "width"));
    }

    #[test]
    fn a_domain_narrows_the_consumers_named() {
        use crate::collector::tests::seen;
        let mut c = Collector::new(crate::config::Config::default());
        for domain in ["hub", "leaf"] {
            let r = format!("$JS.ACK.{domain}.ACC.GAME.srv-1.1.1.1.1790000000000000000.0.x");
            c.on_ack(&r, None, b"+ACK", seen(1));
        }
        let ids =
            |query: &[(&str, &str)]| Params::parse(&q(query), ALL, NOW).unwrap().consumers(&c);
        let both = ids(&[("stream", "GAME"), ("consumer", "srv-1")])
            .unwrap()
            .unwrap();
        assert_eq!(both.len(), 2);
        let leaf = ids(&[
            ("stream", "GAME"),
            ("consumer", "srv-1"),
            ("domain", "leaf"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(leaf.len(), 1);
        assert_eq!(c.names().consumer_domain(leaf[0]), Some("leaf"));
        let missing = ids(&[("stream", "GAME"), ("domain", "edge")]);
        assert!(matches!(missing, Err(ApiError::NotFound(m)) if m.contains("domain edge")));
    }
}
