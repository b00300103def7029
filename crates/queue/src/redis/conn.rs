//! The connections a [`super::RedisQueue`] uses: one shared, multiplexed connection for scripts
//! (a single server through a `ConnectionManager`, or a Redis Cluster through a
//! `ClusterConnection`), plus a small pool of connections for blocking `BLPOP`s.

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// How long a reply may take on the shared connection. Every queue script is short, so this only
/// bounds how long a caller waits on a dead server; blocking waits use their own connections.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long (re)connecting may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest single block on the notification list before the claim script runs again; a safety net,
/// since every path that makes an item claimable also pushes a notification.
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Where the queue lives.
#[derive(Clone)]
pub(crate) enum Server {
    Single(Client),
    /// `main` for the shared connection, `blocking` (longer reply timeout) for `BLPOP`s.
    Cluster {
        main: Box<ClusterClient>,
        blocking: Box<ClusterClient>,
    },
}

/// The shared connection: commands from concurrent callers are pipelined on it.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection used only for `BLPOP` (it may block for [`MAX_BLOCK`]).
pub(crate) enum Blocker {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Server {
    /// The shared connection (connects now).
    pub(crate) async fn connect(&self) -> RedisResult<Conn> {
        match self {
            Server::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_max_delay(Duration::from_millis(500))
                    // Fail a call fast when the server is down; callers retry per `retry()`.
                    .set_number_of_retries(2);
                let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(Conn::Single(conn))
            }
            Server::Cluster { main, .. } => Ok(Conn::Cluster(main.get_async_connection().await?)),
        }
    }

    /// A fresh connection for blocking waits.
    pub(crate) async fn blocker(&self) -> RedisResult<Blocker> {
        match self {
            Server::Single(client) => {
                // No response timeout of its own: the caller bounds each BLPOP.
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(CONNECT_TIMEOUT));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Blocker::Single(conn))
            }
            Server::Cluster { blocking, .. } => {
                Ok(Blocker::Cluster(blocking.get_async_connection().await?))
            }
        }
    }
}

/// The clients for a cluster reached through `nodes`.
pub(crate) fn cluster(nodes: &[&str]) -> RedisResult<Server> {
    Ok(Server::Cluster {
        main: Box::new(cluster_client(nodes, false)?),
        blocking: Box::new(cluster_client(nodes, true)?),
    })
}

/// A cluster client for the shared connection (`blocking`: one whose replies may take as long
/// as a `BLPOP` blocks).
fn cluster_client(nodes: &[&str], blocking: bool) -> RedisResult<ClusterClient> {
    let timeout = if blocking {
        MAX_BLOCK + RESPONSE_TIMEOUT
    } else {
        RESPONSE_TIMEOUT
    };
    ClusterClient::builder(nodes.iter().copied())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(timeout)
        .retries(2)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
}

impl Blocker {
    pub(crate) async fn query(&mut self, cmd: &Cmd) -> RedisResult<Option<(String, String)>> {
        match self {
            Blocker::Single(c) => cmd.query_async(c).await,
            Blocker::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
