//! Raw HTTP/1.1 connections for tests that must hold the server: a socket
//! with a small receive buffer, so a client that does not read soon (or a
//! body that never finishes) keeps the gateway's side waiting.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// A connection to the gateway at `base` (`http://host:port`) on which
/// `head` (a request's head and maybe the start of its body) was written.
pub async fn raw_request(base: &str, head: &str) -> TcpStream {
    let address: SocketAddr = base.trim_start_matches("http://").parse().expect("address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut stream = socket.connect(address).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("request");
    stream
}

/// Whether the gateway has answered (or closed) `stream` already.
pub fn answered(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
