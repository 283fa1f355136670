-- Frame-budget compliance per consumer per hour (UTC): the share of acks within one tick
-- (16 ms; edit for another frame) against an objective of 99.995%.
SELECT
    stream,
    consumer,
    STRFTIME(time, '%Y-%m-%d %H:00') AS hour,
    COUNT(*) AS samples,
    SUM(CASE WHEN ack_latency_us <= 16000 THEN 1 ELSE 0 END) AS within_budget,
    AVG(CASE WHEN ack_latency_us <= 16000 THEN 1.0 ELSE 0.0 END) AS compliance,
    AVG(CASE WHEN ack_latency_us <= 16000 THEN 1.0 ELSE 0.0 END) >= 0.99995 AS meets_objective
FROM samples
WHERE ack_latency_us IS NOT NULL
GROUP BY stream, consumer, hour
ORDER BY hour, stream, consumer
