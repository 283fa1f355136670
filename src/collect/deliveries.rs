//! The delivery tap: messages on the delivery patterns (pull inboxes, push deliver subjects)
//! whose reply subject is a JetStream ack subject. Everything else on those patterns (request
//! replies, pull status messages, flow-control messages) is not a delivery and is skipped.

use super::acks::ACK_PREFIX;

/// Whether a message with this reply subject is a JetStream delivery.
pub fn is_delivery(reply: Option<&str>) -> bool {
    reply.is_some_and(|r| r.starts_with(ACK_PREFIX))
}

/// The first value of header `name` (lower-case), matching names case-insensitively.
pub fn header_value<'a, I>(headers: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    headers
        .into_iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ack_replies_are_deliveries() {
        assert!(is_delivery(Some("$JS.ACK.S.C.1.1.1.1.0")));
        assert!(!is_delivery(Some("$JS.FC.S.x.y")));
        assert!(!is_delivery(Some("_INBOX.abc")));
        assert!(!is_delivery(None));
    }

    #[test]
    fn header_names_match_case_insensitively() {
        let headers = [("x-server-id", "srv-3"), ("Other", "v")];
        assert_eq!(header_value(headers, "x-server-id"), Some("srv-3"));
        assert_eq!(
            header_value([("X-SERVER-ID", "a")], "x-server-id"),
            Some("a")
        );
        assert_eq!(header_value(headers, "missing"), None);
    }
}
