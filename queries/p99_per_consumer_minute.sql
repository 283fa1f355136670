-- P99 of the delivery → ack latency per consumer per minute (UTC), with the acks it is over.
-- Every sample with an ack latency counts, whatever its kind.
SELECT
    stream,
    consumer,
    STRFTIME(time, '%Y-%m-%d %H:%M') AS minute,
    COUNT(*) AS samples,
    QUANTILE_CONT(ack_latency_us, 0.99) AS p99_us
FROM samples
WHERE ack_latency_us IS NOT NULL
GROUP BY stream, consumer, minute
ORDER BY minute, stream, consumer
