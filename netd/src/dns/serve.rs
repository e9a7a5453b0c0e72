//! One listener's loops: UDP datagrams and TCP connections, within the listener's
//! [`Budget`].
//!
//! A query is judged before any work: its source's rate, then whether the listener answers
//! that source ([`Access`]), then netd's own names from the snapshot (answered at once, on the
//! loop), and only then forwarded upstream, on a task that holds a permit.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
};

use hickory_proto::op::ResponseCode;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::watch,
};

use super::{
    access::Access,
    answer,
    limits::{self, Budget, Counters},
    upstream,
};
use crate::{accept::Backoff, control::Names};

/// What a listener's loops need.
pub struct Serving {
    pub names: watch::Receiver<Arc<Names>>,
    pub upstream: Arc<Vec<SocketAddr>>,
    /// The networks the namespace's endpoints are on.
    pub networks: RwLock<Vec<String>>,
    pub budget: Budget,
    pub access: Access,
}

/// What to do with a query.
enum Decision {
    Reply(Vec<u8>),
    Forward,
}

impl Serving {
    async fn decide(&self, query: &[u8], source: IpAddr) -> Decision {
        if !self.access.allows(source).await {
            Counters::add(&self.budget.counters().refused);
            return Decision::Reply(answer::failure(query, ResponseCode::Refused));
        }
        let question = match answer::question(query) {
            Ok(question) => question,
            Err(()) => return Decision::Reply(answer::failure(query, ResponseCode::FormErr)),
        };
        let Some(question) = question else {
            return Decision::Forward;
        };
        let networks = self
            .networks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if networks.is_empty() {
            return Decision::Forward;
        }
        let addresses = self.names.borrow().resolve(&networks, &question.name);
        if addresses.is_empty() {
            return Decision::Forward;
        }
        answer::known(&question, &addresses).map_or(Decision::Forward, Decision::Reply)
    }
}

pub async fn udp(socket: UdpSocket, serving: Arc<Serving>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error for an earlier reply, or a lack of memory: the socket is fine.
            Err(error) => {
                tracing::debug!(%error, "DNS: receive");
                continue;
            }
        };
        if !serving.budget.admit(from.ip()) {
            Counters::add(&serving.budget.counters().dropped_rate);
            continue;
        }
        let query = &buf[..len];
        match serving.decide(query, from.ip()).await {
            // Never waits: a reply the socket cannot take now is lost, as on the wire.
            Decision::Reply(reply) => {
                let _ = socket.try_send_to(&reply, from);
            }
            Decision::Forward => {
                let Some(permit) = serving.budget.forward() else {
                    Counters::add(&serving.budget.counters().dropped_busy);
                    continue;
                };
                let (socket, serving, query) = (socket.clone(), serving.clone(), query.to_vec());
                tokio::spawn(async move {
                    let reply = upstream::forward_udp(&serving.upstream, &query)
                        .await
                        .unwrap_or_else(|| answer::failure(&query, ResponseCode::ServFail));
                    drop(permit);
                    let _ = socket.try_send_to(&reply, from);
                });
            }
        }
    }
}

pub async fn tcp(listener: TcpListener, serving: Arc<Serving>) {
    let mut backoff = Backoff::default();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => {
                backoff.accepted();
                accepted
            }
            Err(error) => {
                backoff.failed("DNS", &error).await;
                continue;
            }
        };
        // Over the cap the connection is closed at once: the client retries or uses UDP.
        let Some(permit) = serving.budget.connection() else {
            Counters::add(&serving.budget.counters().tcp_refused);
            continue;
        };
        let serving = serving.clone();
        tokio::spawn(async move {
            connection(stream, from.ip(), &serving).await;
            drop(permit);
        });
    }
}

/// Queries on one TCP connection, each with its 2-byte length (RFC 7766), until the client
/// closes it, stays idle for [`limits::TCP_IDLE`], or goes over its rate.
async fn connection(mut stream: TcpStream, from: IpAddr, serving: &Serving) {
    let counters = serving.budget.counters();
    loop {
        let query = match tokio::time::timeout(limits::TCP_IDLE, read_query(&mut stream)).await {
            Ok(Some(query)) => query,
            Ok(None) => return,
            Err(_) => {
                Counters::add(&counters.tcp_idle_closed);
                return;
            }
        };
        if !serving.budget.admit(from) {
            Counters::add(&counters.dropped_rate);
            return;
        }
        let reply = match serving.decide(&query, from).await {
            Decision::Reply(reply) => reply,
            Decision::Forward => match serving.budget.forward() {
                Some(_permit) => upstream::forward_tcp(&serving.upstream, &query)
                    .await
                    .unwrap_or_else(|| answer::failure(&query, ResponseCode::ServFail)),
                None => {
                    Counters::add(&counters.dropped_busy);
                    answer::failure(&query, ResponseCode::ServFail)
                }
            },
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        // A client that does not read its answers is idle too.
        let write = async {
            stream.write_all(&reply_len.to_be_bytes()).await?;
            stream.write_all(&reply).await
        };
        if !matches!(
            tokio::time::timeout(limits::TCP_IDLE, write).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

async fn read_query(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut query = vec![0u8; usize::from(len)];
    stream.read_exact(&mut query).await.ok()?;
    Some(query)
}
