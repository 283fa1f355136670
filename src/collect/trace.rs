//! Trace ids from message headers: W3C `traceparent` first, then plain id headers such as
//! `X-Trace-ID`, in the configured order, with header names matched case-insensitively.
//!
//! Pure functions; an invalid value is reported to the caller (who counts it) and the next
//! configured header is tried.

use crate::model::{ParentSpan, TraceId};

/// What the trace headers of one message gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceLookup {
    pub trace_id: Option<TraceId>,
    /// The sender's span, when the id came from a `traceparent`.
    pub parent_span: Option<ParentSpan>,
    /// Headers that were present but held an invalid value.
    pub invalid: u32,
}

/// Looks up a trace id in `headers` (name, value pairs), trying `names` (lower-case) in order.
pub fn find_trace_id<'a, I>(names: &[String], headers: I) -> TraceLookup
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let mut lookup = TraceLookup::default();
    for name in names {
        for (header, value) in headers.clone() {
            if !header.eq_ignore_ascii_case(name) {
                continue;
            }
            let parsed = if name == "traceparent" {
                parse_traceparent_span(value).map(|(id, span)| (id, Some(span)))
            } else {
                parse_trace_id(value).map(|id| (id, None))
            };
            match parsed {
                Some((id, span)) => {
                    lookup.trace_id = Some(id);
                    lookup.parent_span = span;
                    return lookup;
                }
                None => lookup.invalid += 1,
            }
        }
    }
    lookup
}

/// Parses a W3C trace-context `traceparent` value and returns its trace id.
///
/// Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`; later versions may append
/// `-…` fields; version `ff` is invalid. Hex is lower-case; all-zero ids are invalid.
pub fn parse_traceparent(value: &str) -> Option<TraceId> {
    parse_traceparent_span(value).map(|(id, _)| id)
}

/// [`parse_traceparent`] with the parent span id and its sampled flag.
pub fn parse_traceparent_span(value: &str) -> Option<(TraceId, ParentSpan)> {
    let v = value.trim().as_bytes();
    if v.len() < 55 {
        return None;
    }
    let version = &v[0..2];
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    if version == b"00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v[55] != b'-' {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    if !is_lower_hex(parent) || !is_lower_hex(flags) || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    let mut span_id = [0u8; 8];
    for (i, pair) in parent.chunks_exact(2).enumerate() {
        span_id[i] = (HEX[pair[0] as usize] << 4) | HEX[pair[1] as usize];
    }
    let sampled = HEX[flags[1] as usize] & 1 == 1;
    Some((decode(trace, true)?, ParentSpan { span_id, sampled }))
}

/// Parses a plain trace id header: 32 hex digits (or 16, a 64-bit id, left-padded), any case,
/// not all zeros.
pub fn parse_trace_id(value: &str) -> Option<TraceId> {
    let v = value.trim().as_bytes();
    match v.len() {
        32 => decode(v, false),
        16 => {
            let mut padded = [b'0'; 32];
            padded[16..].copy_from_slice(v);
            decode(&padded, false)
        }
        _ => None,
    }
}

/// Hex digit values; 0xFF for anything else. Upper-case letters map to 0x10 + value so that
/// the strict lower-case parse can reject them with the same table.
const HEX: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 0x10 + 10 + i as u8;
        i += 1;
    }
    table
};

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| HEX[b as usize] < 0x10)
}

/// Decodes 32 hex digits; lower-case only when `lower_only`. All zeros is no id.
fn decode(hex: &[u8], lower_only: bool) -> Option<TraceId> {
    let limit = if lower_only { 0x10 } else { 0x20 };
    let mut out = [0u8; 16];
    let mut invalid = false;
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        invalid |= hi >= limit || lo >= limit;
        out[i] = ((hi & 0x0F) << 4) | (lo & 0x0F);
    }
    (!invalid && out != [0; 16]).then_some(TraceId(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_names_its_span_and_sampling() {
        let (_, span) = parse_traceparent_span(TP).unwrap();
        assert_eq!(
            span.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(span.sampled);
        let unsampled = TP.replace("-01", "-00");
        assert!(!parse_traceparent_span(&unsampled).unwrap().1.sampled);
        let names = vec!["traceparent".to_string(), "x-trace-id".to_string()];
        let found = find_trace_id(&names, [("traceparent", TP)]);
        assert_eq!(found.parent_span, Some(span));
        let plain = find_trace_id(&names, [("X-Trace-ID", "4bf92f3577b34da6a3ce929d0e0e4736")]);
        assert!(plain.trace_id.is_some());
        assert_eq!(plain.parent_span, None);
    }

    #[test]
    fn valid_traceparent() {
        let id = parse_traceparent(TP).unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A future version may carry more fields.
        let future = format!("cc{}-what-the-future-holds", &TP[2..]);
        assert!(parse_traceparent(&future).is_some());
    }

    #[test]
    fn invalid_traceparents() {
        let cases = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for case in cases {
            assert_eq!(parse_traceparent(case), None, "{case:?}");
        }
    }

    #[test]
    fn plain_ids() {
        let id = parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let short = parse_trace_id("a3ce929d0e0e4736").unwrap();
        assert_eq!(short.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(parse_trace_id("0000000000000000"), None);
        assert_eq!(parse_trace_id("xyz"), None);
    }

    #[test]
    fn lookup_order_and_case() {
        let names = vec!["traceparent".to_string(), "x-trace-id".to_string()];
        let headers = [
            ("X-Trace-ID", "a3ce929d0e0e4736a3ce929d0e0e4736"),
            ("TraceParent", TP),
        ];
        let found = find_trace_id(&names, headers);
        assert_eq!(
            found.trace_id.unwrap().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(found.invalid, 0);

        // An invalid traceparent is counted and the next header is used.
        let headers = [
            ("traceparent", "garbage"),
            ("x-trace-id", "a3ce929d0e0e4736a3ce929d0e0e4736"),
        ];
        let found = find_trace_id(&names, headers);
        assert_eq!(
            found.trace_id.unwrap().to_string(),
            "a3ce929d0e0e4736a3ce929d0e0e4736"
        );
        assert_eq!(found.invalid, 1);

        let found = find_trace_id(&names, [("Other", "x")]);
        assert_eq!(found, TraceLookup::default());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,80}") {
            let _ = parse_traceparent(&s);
            let _ = parse_trace_id(&s);
        }

        #[test]
        fn round_trip(bytes in proptest::array::uniform16(any::<u8>())) {
            prop_assume!(bytes != [0; 16]);
            let id = TraceId(bytes);
            let tp = format!("00-{id}-00f067aa0ba902b7-01");
            prop_assert_eq!(parse_traceparent(&tp), Some(id));
            prop_assert_eq!(parse_trace_id(&id.to_string()), Some(id));
        }
    }
}
