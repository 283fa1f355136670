-- Ordered-delivery failures per subject: of the acks of a consumer on a subject, in ack order,
-- those of a message whose subject already had a later stream sequence acked (the report's
-- `ordering` block, per subject).
SELECT
    stream,
    consumer,
    subject,
    COUNT(*) AS checked,
    SUM(CASE WHEN stream_seq < highest_seq THEN 1 ELSE 0 END) AS out_of_order,
    AVG(CASE WHEN stream_seq < highest_seq THEN 1.0 ELSE 0.0 END) AS rate
FROM (
    SELECT
        stream,
        consumer,
        subject,
        stream_seq,
        MAX(stream_seq) OVER (
            PARTITION BY stream, consumer, subject ORDER BY acked_ns, stream_seq
        ) AS highest_seq
    FROM samples
    WHERE kind = 'ack' AND subject IS NOT NULL
) AS acks
GROUP BY stream, consumer, subject
ORDER BY rate DESC, stream, consumer, subject
