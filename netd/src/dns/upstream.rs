//! Queries netd does not answer go, byte for byte, to the host's own resolvers: from netd's
//! namespace (the host's), so that a container's external names resolve as the host's do.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

/// How long one upstream server has to answer before the next is asked.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The nameservers of a resolv.conf, leaving out `exclude` (netd's own address: asking
/// ourselves would loop).
pub fn from_resolv_conf(text: &str, exclude: IpAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .filter(|ip| *ip != exclude)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks each server in turn over UDP; the first answer wins.
pub async fn forward_udp(servers: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for server in servers {
        let bind: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let Ok(socket) = UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.send_to(query, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        // A stray datagram from another address is not the answer.
        let answer = tokio::time::timeout(TIMEOUT, async {
            loop {
                let (len, from) = socket.recv_from(&mut buf).await?;
                if from == *server && len >= 2 && buf[..2] == query[..2.min(query.len())] {
                    return std::io::Result::Ok(len);
                }
            }
        })
        .await;
        if let Ok(Ok(len)) = answer {
            buf.truncate(len);
            return Some(buf);
        }
    }
    None
}

/// Asks each server in turn over TCP (for a client that asked over TCP: an answer too big for
/// UDP).
pub async fn forward_tcp(servers: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(query.len()).ok()?;
    for server in servers {
        let exchange = async {
            let mut stream = TcpStream::connect(server).await?;
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(query).await?;
            let answer_len = stream.read_u16().await?;
            let mut answer = vec![0u8; usize::from(answer_len)];
            stream.read_exact(&mut answer).await?;
            std::io::Result::Ok(answer)
        };
        if let Ok(Ok(answer)) = tokio::time::timeout(TIMEOUT, exchange).await {
            return Some(answer);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_but_our_own() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver 169.254.53.53\nnameserver ::1\noptions ndots:1\n";
        let servers = from_resolv_conf(text, "169.254.53.53".parse().unwrap());
        assert_eq!(
            servers,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
