//! Every parser of what the taps read, on the same bytes: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ackscope::collect::acks::{parse_ack_payload, parse_ack_subject};
use ackscope::collect::advisories::parse_advisory_subject;
use ackscope::collect::metrics::parse_ack_metric;
use ackscope::collect::trace::find_trace_id;
use ackscope::units::{parse_duration, parse_epoch};

fuzz_target!(|data: &[u8]| {
    let _ = parse_ack_payload(data);
    let _ = parse_ack_metric(data, 1_790_000_000_000_000_000);
    let text = String::from_utf8_lossy(data);
    let _ = parse_ack_subject(&text);
    let _ = parse_advisory_subject(&text);
    let _ = parse_duration(&text);
    let _ = parse_epoch(&text);
    let names = ["traceparent".to_string(), "x-trace-id".to_string()];
    let _ = find_trace_id(&names, [("traceparent", &*text), ("X-Trace-ID", &*text)]);
});
