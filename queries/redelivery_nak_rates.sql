-- Redeliveries and NAKs per consumer: of the messages it acked, NAKed or terminated, how many
-- were redelivered before (delivery count above 1) and how many were NAKed.
SELECT
    stream,
    consumer,
    COUNT(*) AS samples,
    SUM(CASE WHEN deliveries > 1 THEN 1 ELSE 0 END) AS redelivered,
    SUM(CASE WHEN kind = 'nak' THEN 1 ELSE 0 END) AS naks,
    AVG(CASE WHEN deliveries > 1 THEN 1.0 ELSE 0.0 END) AS redelivery_rate,
    AVG(CASE WHEN kind = 'nak' THEN 1.0 ELSE 0.0 END) AS nak_rate
FROM samples
WHERE kind <> 'progress'
GROUP BY stream, consumer
ORDER BY stream, consumer
