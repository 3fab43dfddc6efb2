//! Connections to one Redis server: a round trip takes an idle connection (or opens one),
//! uses it alone and puts it back, so concurrent requests never wait on each other's
//! round trips, and no lock is held across one.

use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use redis::{Client, Connection, ErrorKind, RedisResult};

/// Opening a connection (TCP, TLS, AUTH, SELECT) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Sending a command, or waiting for its reply, may take this long.
pub(super) const IO_TIMEOUT: Duration = Duration::from_millis(200);

pub(super) struct Pool {
    client: Client,
    /// Connections not in use. When it is full a returned connection is closed instead:
    /// a burst opens connections, and the steady state keeps no more than this many.
    idle: ArrayQueue<Connection>,
}

impl Pool {
    pub fn new(client: Client) -> Self {
        let idle = std::thread::available_parallelism().map_or(4, |n| n.get() * 2);
        Pool {
            client,
            idle: ArrayQueue::new(idle),
        }
    }

    /// Runs `op` on a connection. A pooled connection the server has closed since (a
    /// restart, an idle timeout) is replaced by a new one and `op` tried again once; a
    /// timeout is not retried, the server being slow rather than gone.
    pub fn round_trip<T>(&self, op: &impl Fn(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        if let Some(mut connection) = self.idle.pop() {
            match op(&mut connection) {
                Ok(value) => {
                    self.put_back(connection);
                    return Ok(value);
                }
                Err(e) if e.is_connection_dropped() && !e.is_timeout() => {}
                Err(e) => {
                    self.put_back_if_in_sync(connection, &e);
                    return Err(e);
                }
            }
        }
        let mut connection = self.connect()?;
        let result = op(&mut connection);
        match &result {
            Ok(_) => self.put_back(connection),
            Err(e) => self.put_back_if_in_sync(connection, e),
        }
        result
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(connection)
    }

    fn put_back(&self, connection: Connection) {
        // Full: the connection is dropped, which closes it.
        let _ = self.idle.push(connection);
    }

    /// After an error reply the connection is ready for the next command; after anything
    /// else (a timeout, a broken stream) a late reply could be read as the next command's,
    /// so the connection is closed.
    fn put_back_if_in_sync(&self, connection: Connection, error: &redis::RedisError) {
        if matches!(error.kind(), ErrorKind::Server(_)) {
            self.put_back(connection);
        }
    }
}
