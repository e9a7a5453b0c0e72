//! What netd answers to one DNS query, with hickory's message codec: the names of the asker's
//! networks, authoritatively; everything else is left to the upstream servers.

use std::net::Ipv4Addr;

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType, rdata::A},
};

/// How long a client may keep an answer: short, since containers come and go.
pub const TTL: u32 = 10;

/// A query netd may answer itself.
#[derive(Debug)]
pub struct Question {
    pub message: Message,
    /// The name asked for, lower-cased, without the root's dot.
    pub name: String,
    pub kind: RecordType,
}

/// The one question of a standard query for class IN, or `None` (then the query goes upstream
/// as it is, or is refused when it does not even parse).
pub fn question(query: &[u8]) -> Result<Option<Question>, ()> {
    let message = Message::from_vec(query).map_err(|_| ())?;
    if message.metadata.message_type != MessageType::Query
        || message.metadata.op_code != OpCode::Query
        || message.queries.len() != 1
    {
        return Ok(None);
    }
    let query = &message.queries[0];
    if query.query_class() != DNSClass::IN {
        return Ok(None);
    }
    let name = query.name().to_ascii().to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_string();
    let kind = query.query_type();
    Ok(Some(Question {
        message,
        name,
        kind,
    }))
}

/// The answer to `question` for a name that has `addresses` (not empty): A records; for any
/// other type an empty, authoritative NOERROR, so that the client does not look elsewhere.
pub fn known(question: &Question, addresses: &[Ipv4Addr]) -> Option<Vec<u8>> {
    let mut reply = Message::response(question.message.metadata.id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = question.message.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(question.message.queries.iter().cloned());
    if matches!(question.kind, RecordType::A | RecordType::ANY) {
        let name = question.message.queries[0].name().clone();
        for ip in addresses {
            reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))));
        }
    }
    reply.to_vec().ok()
}

/// A failure answer (`SERVFAIL` when upstream servers did not answer, `FORMERR` for a query
/// that does not parse), keeping the query's id so that the client matches it.
pub fn failure(query: &[u8], code: ResponseCode) -> Vec<u8> {
    let id = query
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let mut reply = Message::error_msg(id, OpCode::Query, code);
    if let Ok(parsed) = Message::from_vec(query) {
        reply.add_queries(parsed.queries);
    }
    reply.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use hickory_proto::{op::Query, rr::Name};

    use super::*;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_known_name_gets_its_addresses_authoritatively() {
        let q = question(&query("Web.", RecordType::A)).unwrap().unwrap();
        assert_eq!(q.name, "web");
        let ips = ["172.31.0.3".parse().unwrap(), "172.31.0.4".parse().unwrap()];
        let reply = Message::from_vec(&known(&q, &ips).unwrap()).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let got: Vec<RData> = reply.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(got, vec![RData::A(A(ips[0])), RData::A(A(ips[1]))]);
    }

    #[test]
    fn other_types_of_a_known_name_are_answered_empty() {
        let q = question(&query("web.", RecordType::AAAA)).unwrap().unwrap();
        let reply = Message::from_vec(&known(&q, &["10.0.0.1".parse().unwrap()]).unwrap()).unwrap();
        assert!(reply.answers.is_empty());
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn garbage_is_a_format_error_with_its_id() {
        assert!(question(b"\x12\x34garbage").is_err());
        let reply = Message::from_vec(&failure(b"\x12\x34garbage", ResponseCode::FormErr)).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
}
