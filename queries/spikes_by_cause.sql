-- Spikes by top cause and day (UTC), one consumer's spikes only (not the all-consumers view):
-- run with --from -7d for the week.
SELECT
    STRFTIME(start, '%Y-%m-%d') AS day,
    top_cause,
    COUNT(*) AS spikes,
    MAX(p99_us) AS worst_p99_us,
    AVG(confidence) AS mean_confidence
FROM spikes
WHERE consumer <> '*'
GROUP BY day, top_cause
ORDER BY day, spikes DESC, top_cause
