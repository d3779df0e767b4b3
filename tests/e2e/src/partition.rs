//! A TCP proxy in front of the API server that can be cut off, to partition one replica
//! from the cluster. While cut off, bytes in either direction are dropped (the
//! connections go silent, as in a network partition: requests hang until the client's
//! own timeouts); connections that lost bytes are closed when the partition heals, since
//! their streams are broken. It can also play an API server that is down: connections
//! closed at once, new ones closed as soon as they are accepted.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::HarnessError;

/// What passes the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    /// Bytes dropped; connections hang.
    Cut,
    /// Connections closed; the other side looks gone.
    Down,
}

pub struct PartitionProxy {
    /// `https://127.0.0.1:PORT`: the API server's URL through the proxy.
    pub url: String,
    cut: Arc<watch::Sender<Link>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction until either side closes; drops bytes while cut off, and ends
/// once the partition heals if it dropped any.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<Link>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut broken = false;
    loop {
        tokio::select! {
            read = from.read(&mut buffer) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                match *cut.borrow() {
                    Link::Down => return,
                    Link::Cut => {
                        broken = true;
                        continue;
                    }
                    Link::Open => {}
                }
                if broken || to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
            changed = cut.changed() => {
                let link = *cut.borrow();
                if changed.is_err() || link == Link::Down || (broken && link == Link::Open) {
                    return;
                }
            }
        }
    }
}

impl PartitionProxy {
    /// Listens on a free loopback port and forwards to `api_server` (host:port).
    pub async fn start(api_server: &str) -> Result<Self, HarnessError> {
        let upstream: SocketAddr = api_server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| HarnessError::new(format!("API server address {api_server}: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::new(format!("partition proxy: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::new(format!("partition proxy: {e}")))?;
        let (cut, _) = watch::channel(Link::Open);
        let cut = Arc::new(cut);
        let accepting = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = accepting.subscribe();
                if *cut.borrow() == Link::Down {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = pipe(client_read, server_write, cut.clone()) => {}
                        () = pipe(server_read, client_write, cut) => {}
                    }
                });
            }
        });
        Ok(Self {
            url: format!("https://{addr}"),
            cut,
            task,
        })
    }

    /// Cuts the replica off from the API server.
    pub fn cut(&self) {
        self.cut.send_replace(Link::Cut);
    }

    /// The API server seems down to the replica: its connections close, new ones are
    /// closed when accepted.
    pub fn down(&self) {
        self.cut.send_replace(Link::Down);
    }

    /// Heals the partition (or brings the API server back): broken connections close, new
    /// ones go through.
    pub fn heal(&self) {
        self.cut.send_replace(Link::Open);
    }
}
