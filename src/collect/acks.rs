//! The ack tap's parsers: JetStream ack reply subjects and ack payloads.
//!
//! Pure functions over bytes; the tap loop in [`super::pipeline`] calls them for every message on
//! `$JS.ACK.>`. Bad input is an [`Error`], which the caller counts and skips.

use crate::model::{AckKind, AckPayload, AckSubject};

/// Why an ack subject or payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a $JS.ACK subject")]
    NotAck,
    #[error("ack subject has {0} tokens, expected 9, 11 or 12")]
    TokenCount(usize),
    #[error("ack subject has an empty token")]
    EmptyToken,
    #[error("ack subject field `{0}` is not a number")]
    Number(&'static str),
    #[error("ack payload not recognised")]
    Payload,
}

/// The prefix every ack reply subject starts with.
pub const ACK_PREFIX: &str = "$JS.ACK.";

/// Parses an ack reply subject in either form:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` or
/// `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]`.
pub fn parse_ack_subject(subject: &str) -> Result<AckSubject<'_>, Error> {
    let rest = subject.strip_prefix(ACK_PREFIX).ok_or(Error::NotAck)?;
    // Where each token ends; `$JS` and `ACK` are stripped. One pass, no allocation.
    let bytes = rest.as_bytes();
    let mut ends = [0usize; 10];
    let mut count = 0;
    let mut token_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'.' {
            continue;
        }
        if i == token_start {
            return Err(Error::EmptyToken);
        }
        if count == ends.len() - 1 {
            return Err(Error::TokenCount(count + 4));
        }
        ends[count] = i;
        count += 1;
        token_start = i + 1;
    }
    if token_start == bytes.len() {
        return Err(Error::EmptyToken);
    }
    ends[count] = bytes.len();
    count += 1;
    let token = |k: usize| {
        let start = if k == 0 { 0 } else { ends[k - 1] + 1 };
        &rest[start..ends[k]]
    };
    let (domain, account_hash, names_at, last) = match count {
        7 => (None, None, 0, None),
        9 => (Some(token(0)), Some(token(1)), 2, None),
        10 => (Some(token(0)), Some(token(1)), 2, Some(token(9))),
        n => return Err(Error::TokenCount(n + 2)),
    };
    let stream_start = if names_at == 0 {
        0
    } else {
        ends[names_at - 1] + 1
    };
    let n = |k: usize, field| number(token(names_at + 2 + k), field);
    let stored = n(3, "stored_ns")?;
    Ok(AckSubject {
        domain: domain.filter(|d| *d != "_"),
        account_hash,
        stream: token(names_at),
        consumer: token(names_at + 1),
        stream_consumer: &rest[stream_start..ends[names_at + 1]],
        delivered: n(0, "delivered")?,
        stream_seq: n(1, "stream_seq")?,
        consumer_seq: n(2, "consumer_seq")?,
        stored_ns: i64::try_from(stored).map_err(|_| Error::Number("stored_ns"))?,
        pending: n(4, "pending")?,
        token: last,
    })
}

/// A decimal `u64`: digits only, no sign, no overflow.
fn number(token: &str, field: &'static str) -> Result<u64, Error> {
    let bytes = token.as_bytes();
    // Up to 19 digits cannot overflow a u64. Four digits at a time keep the dependency chain
    // short: the four are combined independently, then folded in with one multiply-add.
    if bytes.len() <= 19 {
        let mut value: u64 = 0;
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            let d = [0, 1, 2, 3].map(|i| chunk[i].wrapping_sub(b'0') as u64);
            if d.iter().any(|&x| x > 9) {
                return Err(Error::Number(field));
            }
            value = value * 10_000 + (d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]);
        }
        for &b in chunks.remainder() {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return Err(Error::Number(field));
            }
            value = value * 10 + digit as u64;
        }
        return Ok(value);
    }
    let mut value: u64 = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(Error::Number(field));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit as u64))
            .ok_or(Error::Number(field))?;
    }
    Ok(value)
}

/// Classifies an ack payload: empty, `+ACK`, `+OK`, `+NXT…` → ack; `-NAK [delay]` → nak;
/// `+WPI` → progress; `+TERM [reason]` → term.
pub fn parse_ack_payload(payload: &[u8]) -> Result<AckPayload, Error> {
    let ack = |kind, next| AckPayload {
        kind,
        nak_delay_ns: None,
        next,
    };
    let trimmed = payload.trim_ascii();
    if trimmed.is_empty() || trimmed == b"+ACK" || trimmed == b"+OK" {
        return Ok(ack(AckKind::Ack, false));
    }
    if trimmed == b"+WPI" {
        return Ok(ack(AckKind::Progress, false));
    }
    if let Some(rest) = strip_word(trimmed, b"+NXT") {
        let _ = rest; // the next-request body (batch size or JSON) is not needed
        return Ok(ack(AckKind::Ack, true));
    }
    if strip_word(trimmed, b"+TERM").is_some() {
        return Ok(ack(AckKind::Term, false));
    }
    if let Some(rest) = strip_word(trimmed, b"-NAK") {
        return Ok(AckPayload {
            kind: AckKind::Nak,
            nak_delay_ns: nak_delay(rest.trim_ascii()),
            next: false,
        });
    }
    Err(Error::Payload)
}

/// `payload` minus `word`, if `payload` is `word` alone or `word` followed by a space.
fn strip_word<'a>(payload: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let rest = payload.strip_prefix(word)?;
    (rest.is_empty() || rest[0].is_ascii_whitespace()).then_some(rest)
}

/// A NAK delay: `{"delay": <ns>}` or a duration such as `5s`. Unreadable delays are ignored:
/// the NAK itself is what matters.
fn nak_delay(body: &[u8]) -> Option<u64> {
    if body.is_empty() {
        return None;
    }
    if body[0] == b'{' {
        #[derive(serde::Deserialize)]
        struct Delay {
            delay: i64,
        }
        let d: Delay = serde_json::from_slice(body).ok()?;
        return u64::try_from(d.delay).ok();
    }
    let text = std::str::from_utf8(body).ok()?;
    crate::units::parse_duration(text)
        .ok()
        .map(crate::units::duration_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nine_token_subject() {
        let s = parse_ack_subject("$JS.ACK.GAME.srv-1.2.1042.77.1790000000123456789.5").unwrap();
        assert_eq!(s.stream, "GAME");
        assert_eq!(s.consumer, "srv-1");
        assert_eq!(s.stream_consumer, "GAME.srv-1");
        assert_eq!(s.delivered, 2);
        assert_eq!(s.stream_seq, 1042);
        assert_eq!(s.consumer_seq, 77);
        assert_eq!(s.stored_ns, 1_790_000_000_123_456_789);
        assert_eq!(s.pending, 5);
        assert_eq!(s.domain, None);
        assert_eq!(s.account_hash, None);
        assert_eq!(s.token, None);
    }

    #[test]
    fn eleven_and_twelve_token_subjects() {
        let s =
            parse_ack_subject("$JS.ACK._.ACCHASH.GAME.c1.1.10.9.1790000000000000000.0").unwrap();
        assert_eq!((s.domain, s.account_hash), (None, Some("ACCHASH")));
        assert_eq!(
            (s.stream, s.consumer, s.stream_consumer),
            ("GAME", "c1", "GAME.c1")
        );
        assert_eq!((s.delivered, s.stream_seq, s.consumer_seq), (1, 10, 9));
        assert_eq!(s.token, None);

        let s = parse_ack_subject("$JS.ACK.hub.ACCHASH.GAME.c1.3.10.9.1790000000000000000.4.Xy12")
            .unwrap();
        assert_eq!(s.domain, Some("hub"));
        assert_eq!(s.token, Some("Xy12"));
        assert_eq!((s.delivered, s.pending), (3, 4));
    }

    #[test]
    fn malformed_subjects_are_errors() {
        assert_eq!(parse_ack_subject("game.x"), Err(Error::NotAck));
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.1.2.3.4"),
            Err(Error::TokenCount(8))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.a.b.S.C.1.2.3.4"),
            Err(Error::TokenCount(10))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.a.b.S.C.1.2.3.4.5.6.7"),
            Err(Error::TokenCount(13))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.1.x.3.4.5"),
            Err(Error::Number("stream_seq"))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.-1.2.3.4.5"),
            Err(Error::Number("delivered"))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.S..1.2.3.4.5"),
            Err(Error::EmptyToken)
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.1.2.3.99999999999999999999.5"),
            Err(Error::Number("stored_ns"))
        );
    }

    #[test]
    fn numbers_of_every_length() {
        for digits in 1..=20 {
            let text: String = (0..digits)
                .map(|i| char::from(b'1' + (i % 9) as u8))
                .collect();
            assert_eq!(
                number(&text, "n"),
                text.parse::<u64>().map_err(|_| Error::Number("n"))
            );
        }
        assert_eq!(number("18446744073709551615", "n"), Ok(u64::MAX));
        assert_eq!(number("18446744073709551616", "n"), Err(Error::Number("n")));
        assert_eq!(number("12a4", "n"), Err(Error::Number("n")));
        assert_eq!(number("1234567/", "n"), Err(Error::Number("n")));
        assert_eq!(number("", "n"), Ok(0));
    }

    #[test]
    fn payload_kinds() {
        let kind = |p: &[u8]| parse_ack_payload(p).map(|a| a.kind);
        assert_eq!(kind(b""), Ok(AckKind::Ack));
        assert_eq!(kind(b"+ACK"), Ok(AckKind::Ack));
        assert_eq!(kind(b"+OK"), Ok(AckKind::Ack));
        assert_eq!(kind(b"-NAK"), Ok(AckKind::Nak));
        assert_eq!(kind(b"+WPI"), Ok(AckKind::Progress));
        assert_eq!(kind(b"+TERM"), Ok(AckKind::Term));
        assert_eq!(kind(b"+TERM bad payload"), Ok(AckKind::Term));
        assert_eq!(kind(b"+ACKX"), Err(Error::Payload));
        assert_eq!(kind(b"hello"), Err(Error::Payload));

        let next = parse_ack_payload(b"+NXT {\"batch\":1}").unwrap();
        assert_eq!((next.kind, next.next), (AckKind::Ack, true));
        assert!(parse_ack_payload(b"+NXT").unwrap().next);
    }

    #[test]
    fn nak_delays() {
        let d = |p: &[u8]| parse_ack_payload(p).unwrap().nak_delay_ns;
        assert_eq!(d(b"-NAK {\"delay\": 5000000000}"), Some(5_000_000_000));
        assert_eq!(d(b"-NAK 250ms"), Some(250_000_000));
        assert_eq!(d(b"-NAK"), None);
        assert_eq!(d(b"-NAK {\"delay\": \"soon\"}"), None);
        assert_eq!(d(b"-NAK {\"delay\": -5}"), None);
    }

    proptest! {
        #[test]
        fn subject_parser_never_panics(s in "\\PC*") {
            let _ = parse_ack_subject(&s);
            let with_prefix = format!("$JS.ACK.{s}");
            let _ = parse_ack_subject(&with_prefix);
        }

        #[test]
        fn subject_parser_accepts_what_it_should(
            stream in "[A-Za-z0-9_-]{1,20}",
            consumer in "[A-Za-z0-9_-]{1,20}",
            nums in proptest::array::uniform5(0u64..i64::MAX as u64),
        ) {
            let subject = format!(
                "$JS.ACK.{stream}.{consumer}.{}.{}.{}.{}.{}",
                nums[0], nums[1], nums[2], nums[3], nums[4]
            );
            let s = parse_ack_subject(&subject).unwrap();
            prop_assert_eq!(s.stream, stream.as_str());
            prop_assert_eq!(s.consumer, consumer.as_str());
            prop_assert_eq!(s.stream_seq, nums[1]);
            prop_assert_eq!(s.stored_ns as u64, nums[3]);
        }

        #[test]
        fn payload_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_ack_payload(&bytes);
            let mut nak = b"-NAK ".to_vec();
            nak.extend_from_slice(&bytes);
            prop_assert_eq!(parse_ack_payload(&nak).unwrap().kind, AckKind::Nak);
        }
    }
}
