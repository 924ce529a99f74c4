//! The client side: openraft's network, one connection per peer client, reconnected when
//! it fails.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::EmptyNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::frame::{self, PREFACE};
use super::rpc::{Request, Response};
use crate::types::{NodeId, TypeConfig};

/// Where each node's cluster listener is (`host:port`), as this node knows it.
#[derive(Clone, Debug, Default)]
pub struct AddressBook(Arc<RwLock<BTreeMap<NodeId, String>>>);

impl AddressBook {
    pub fn set(&self, node: NodeId, addr: impl Into<String>) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, addr.into());
    }

    pub fn get(&self, node: NodeId) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .cloned()
    }
}

/// openraft's network factory over TCP.
#[derive(Clone, Debug)]
pub struct Network {
    book: AddressBook,
}

impl Network {
    pub fn new(book: AddressBook) -> Self {
        Self { book }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> Peer {
        Peer {
            target,
            book: self.book.clone(),
            conn: None,
        }
    }
}

/// One client of one peer.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    book: AddressBook,
    conn: Option<BufReader<TcpStream>>,
}

/// What a call can fail with before the peer answers.
enum CallError {
    /// No connection could be made: the peer is down or unknown.
    Unreachable(io::Error),
    /// The connection failed or timed out during the call.
    Network(io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, EmptyNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl Peer {
    async fn connect(&mut self) -> Result<&mut BufReader<TcpStream>, CallError> {
        if self.conn.is_none() {
            let addr = self.book.get(self.target).ok_or_else(|| {
                CallError::Unreachable(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address for node {}", self.target),
                ))
            })?;
            let mut stream = TcpStream::connect(&addr)
                .await
                .map_err(CallError::Unreachable)?;
            let _ = stream.set_nodelay(true);
            stream
                .write_all(PREFACE)
                .await
                .map_err(CallError::Unreachable)?;
            self.conn = Some(BufReader::new(stream));
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Sends `request` and waits for the answer, at most `ttl`; a failed connection is
    /// dropped, and the next call connects again.
    async fn call(&mut self, request: Request, ttl: Duration) -> Result<Response, CallError> {
        let exchange = async {
            let conn = self.connect().await?;
            frame::write(conn.get_mut(), &request)
                .await
                .map_err(CallError::Network)?;
            frame::read::<_, Response>(conn)
                .await
                .map_err(CallError::Network)?
                .ok_or_else(|| {
                    CallError::Network(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection",
                    ))
                })
        };
        let result = match tokio::time::timeout(ttl, exchange).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {ttl:?}"),
            ))),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, EmptyNode, E> {
        CallError::Network(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("node {} answered another request", self.target),
        ))
        .into_rpc()
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, EmptyNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, EmptyNode, RaftError<NodeId, E>>>;

impl Peer {
    /// One RPC: `answer` picks the peer's result out of the response, `None` for a response
    /// to another request.
    async fn rpc<T, E: std::error::Error>(
        &mut self,
        request: Request,
        option: RPCOption,
        answer: impl FnOnce(Response) -> Option<Result<T, RaftError<NodeId, E>>>,
    ) -> RpcResult<T, E> {
        match self.call(request, option.hard_ttl()).await {
            Ok(response) => match answer(response) {
                Some(r) => r.map_err(|e| self.remote(e)),
                None => Err(self.unexpected()),
            },
            Err(e) => Err(e.into_rpc()),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(Request::AppendEntries(rpc), option, |r| match r {
            Response::AppendEntries(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(Request::InstallSnapshot(rpc), option, |r| match r {
            Response::InstallSnapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(Request::Vote(rpc), option, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}
