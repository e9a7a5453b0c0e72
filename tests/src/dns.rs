//! DNS for the name tests: a stand-in for "the outside world's" resolver inside a test
//! namespace, and lookups the way a container's libc does them (busybox nslookup).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use hickory_proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{RData, Record, rdata::A},
};

use crate::netns::Netns;

/// A UDP DNS server in a namespace that knows a few names and says NXDOMAIN to the rest.
pub struct FakeUpstream {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start(
        ns: &Netns,
        address: SocketAddr,
        names: &[(&str, Ipv4Addr)],
    ) -> anyhow::Result<Self> {
        let names: HashMap<String, Ipv4Addr> = names
            .iter()
            .map(|(n, ip)| (n.trim_end_matches('.').to_ascii_lowercase(), *ip))
            .collect();
        let socket = {
            let _inside = netd::netns::enter(&ns.path())?;
            UdpSocket::bind(address)?
        };
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..len], &names) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }
}

fn answer(query: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    let asked = query.queries.first()?;
    let name = asked
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match names.get(&name) {
        Some(ip) if asked.query_type() == hickory_proto::rr::RecordType::A => {
            reply.add_answer(Record::from_rdata(
                asked.name().clone(),
                60,
                RData::A(A(*ip)),
            ));
        }
        Some(_) => {}
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.to_vec().ok()
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The IPv4 addresses `name` resolves to from inside `ns`, asking `server` (busybox's
/// nslookup); empty when it does not resolve.
pub fn lookup(ns: &Netns, name: &str, server: &str) -> Vec<Ipv4Addr> {
    ns.exec("busybox", &["nslookup", "-type=A", name, server])
        .map(|out| parse_nslookup(&out))
        .unwrap_or_default()
}

/// The answers in busybox nslookup's output (the first "Address" is the server's own).
pub fn parse_nslookup(out: &str) -> Vec<Ipv4Addr> {
    out.split("Name:")
        .skip(1)
        .flat_map(|answer| {
            answer
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .filter_map(|a| a.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asks `server`:53 for `name`'s A records over UDP from inside `ns`, the way a resolver
/// does: the answer, or `None` when none came within a second (nothing listening, a drop).
pub fn ask(ns: &Netns, server: Ipv4Addr, name: &str) -> Option<Message> {
    let socket = {
        let _inside = netd::netns::enter(&ns.path()).ok()?;
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?
    };
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut query = Message::new(0x5353, hickory_proto::op::MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(name).ok()?,
        hickory_proto::rr::RecordType::A,
    ));
    socket
        .send_to(&query.to_vec().ok()?, SocketAddr::from((server, 53)))
        .ok()?;
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..len]).ok()
}

/// The A addresses of an answer.
pub fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}
