//! The node's two listeners: the client port and the peer port, bound early and listened on
//! when the node is ready, with TCP_NODELAY on accepted connections.

use std::net::SocketAddr;

use raftlog_types::limits::LISTEN_BACKLOG_CONNECTIONS_MAX;

use crate::error::NodeError;

/// Accepted connections with TCP_NODELAY. tonic sets it only on listeners it binds itself;
/// without it, small responses wait for the peer's delayed ACK (40 ms on Linux).
pub(super) fn no_delay(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The source address for connections to peers: the address this node listens on for them,
/// unless that is a wildcard (then the kernel chooses).
pub(super) fn outgoing_peer_address(peer_addr: &str) -> Option<std::net::IpAddr> {
    let ip = peer_addr.parse::<SocketAddr>().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does, so a restart is not refused
/// for the connections of the killed process) without listening yet.
pub(super) fn reserve(addr: &str, what: &'static str) -> Result<tokio::net::TcpSocket, NodeError> {
    let error = |source| NodeError::Bind {
        addr: addr.to_owned(),
        what,
        source,
    };
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e: std::net::AddrParseError| error(std::io::Error::other(e)))?;
    let socket = if parsed.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(parsed).map_err(error)?;
    Ok(socket)
}

/// Starts listening on a socket from [`reserve`].
pub(super) fn listen(
    socket: tokio::net::TcpSocket,
    addr: &str,
    what: &'static str,
) -> Result<tokio::net::TcpListener, NodeError> {
    socket
        .listen(LISTEN_BACKLOG_CONNECTIONS_MAX)
        .map_err(|source| NodeError::Bind {
            addr: addr.to_owned(),
            what,
            source,
        })
}
