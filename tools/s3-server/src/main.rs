//! A throwaway S3-compatible server for tests and benchmarks: the `s3s-fs` file system backend
//! (buckets are directories under ROOT, conditional `If-None-Match: *` writes supported) served
//! over HTTP/1.1 and HTTP/2 with TCP_NODELAY set on every connection.
//!
//! `s3s-fs`'s own binary leaves Nagle's algorithm on, so each GET response (headers, then body)
//! waits ~40 ms for a delayed ACK; that would dominate every read measured against it.
//!
//!     strata-test-s3 --port 9000 --access-key AK --secret-key SK ROOT

use std::path::PathBuf;

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Opt {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Access key clients sign with.
    #[arg(long)]
    access_key: String,
    /// Secret key clients sign with.
    #[arg(long)]
    secret_key: String,
    /// Directory holding the buckets (one subdirectory each).
    root: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opt = Opt::parse();
    std::fs::create_dir_all(&opt.root)?;
    let fs = FileSystem::new(&opt.root).map_err(|e| format!("{}: {e:?}", opt.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(opt.access_key, opt.secret_key));
    let service = builder.build();
    let listener = TcpListener::bind((opt.host.as_str(), opt.port)).await?;
    eprintln!("strata-test-s3 listening on {}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
