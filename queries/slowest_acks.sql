-- The 20 slowest acks, with their trace ids: open them in the tracing system.
SELECT
    time,
    stream,
    consumer,
    subject,
    trace_id,
    ack_latency_us,
    phase_us,
    deliveries,
    kind
FROM samples
WHERE ack_latency_us IS NOT NULL
ORDER BY ack_latency_us DESC
LIMIT 20
