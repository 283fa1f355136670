-- Which part of the frame is slow: P99 of the ack latency by 1 ms band of the frame phase
-- (each ack's phase in its own consumer's frame clock), over every consumer.
SELECT
    CAST(FLOOR(phase_us / 1000) AS BIGINT) AS band_ms,
    COUNT(*) AS samples,
    QUANTILE_CONT(ack_latency_us, 0.99) AS p99_us
FROM samples
WHERE ack_latency_us IS NOT NULL AND phase_us IS NOT NULL
GROUP BY band_ms
ORDER BY band_ms
