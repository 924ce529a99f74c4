//! The server side of the control channel: one task per peer connection, requests answered
//! in order.

use std::io;
use std::net::SocketAddr;

use strata_net::Drain;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::frame::{self, PREFACE};
use super::rpc::{Request, Response};
use crate::types::Raft;

/// Open peer connections at most: a node has one per peer and purpose, so this only bounds
/// what a misbehaving client can take.
pub const MAX_PEER_CONNECTIONS: usize = 1024;

/// Serves the Raft RPCs of `raft` on `listener` until `drain` is cancelled.
pub async fn serve(listener: TcpListener, raft: Raft, drain: Drain) {
    let token = drain.token().clone();
    strata_net::serve(
        listener,
        "cluster",
        MAX_PEER_CONNECTIONS,
        drain,
        move |stream, peer| {
            let raft = raft.clone();
            let token = token.clone();
            async move {
                tokio::select! {
                    r = connection(stream, &raft) => if let Err(e) = r {
                        tracing::warn!(%peer, error = %e, "closing cluster connection");
                    },
                    _ = token.cancelled() => {}
                }
            }
        },
    )
    .await;
}

async fn connection(stream: TcpStream, raft: &Raft) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer: Option<SocketAddr> = stream.peer_addr().ok();
    let mut stream = BufReader::new(stream);
    let mut preface = [0u8; 8];
    stream.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a Strata cluster connection (preface {preface:?})"),
        ));
    }
    while let Some(request) = frame::read::<_, Request>(&mut stream).await? {
        let response = answer(raft, request).await;
        frame::write(stream.get_mut(), &response).await?;
    }
    tracing::debug!(?peer, "cluster connection closed by the peer");
    Ok(())
}

async fn answer(raft: &Raft, request: Request) -> Response {
    match request {
        Request::AppendEntries(r) => Response::AppendEntries(raft.append_entries(r).await),
        Request::Vote(r) => Response::Vote(raft.vote(r).await),
        Request::InstallSnapshot(r) => Response::InstallSnapshot(raft.install_snapshot(r).await),
    }
}
