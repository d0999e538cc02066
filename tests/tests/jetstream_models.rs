//! The model behaviour suite of `netdb-models` (`models/tests/suite/mod.rs`, which
//! `models/tests/tasks_and_memories.rs` runs on RedEX) on NATS JetStream: every fresh
//! backend is a `nats-server -js` of its own ([`netdb_tests::nats`]), so tests running in
//! parallel never share a stream; `NETDB_SKIP_JETSTREAM=1` skips them.

#[path = "../../models/tests/suite/mod.rs"]
mod suite;

/// The backends the suite runs on: JetStream connections, each to a server of its own.
mod fixture {
    use std::ops::Range;
    use std::sync::Arc;
    use std::time::Duration;

    use netdb_runtime::cortex::{
        CortexConfig, CortexError, CortexLog, LogBackend, LogTail, OpenedLog,
    };
    use netdb_runtime::jetstream::{JetStream, JetStreamOptions};
    use netdb_runtime::redex::{ChannelName, RedexError, RedexEvent};
    use netdb_tests::nats::{NatsServer, nats_server_binary};

    /// Starts servers; `None` when `NETDB_SKIP_JETSTREAM=1`.
    pub struct Fixture;

    impl Fixture {
        pub fn start() -> Option<Fixture> {
            nats_server_binary().map(|_| Fixture)
        }

        /// A connection to a new server, empty.
        pub fn fresh(&self) -> Backend {
            self.durable().open()
        }

        /// A new server; it stops once the `Durable`, the backends opened on it and their
        /// logs are all dropped.
        pub fn durable(&self) -> Durable {
            Durable(Arc::new(NatsServer::start().expect("nats-server")))
        }
    }

    pub struct Durable(Arc<NatsServer>);

    impl Durable {
        /// A new connection to the server: what a restarted process opens. Its timeouts
        /// are generous (nothing here injects failures; the machine may be busy).
        pub fn open(&self) -> Backend {
            let js = JetStream::connect(
                JetStreamOptions::new([self.0.url()])
                    .with_request_timeout(Duration::from_secs(20))
                    .with_append_timeout(Duration::from_secs(20)),
            )
            .expect("a connection to nats-server");
            Backend {
                js,
                server: Arc::clone(&self.0),
            }
        }
    }

    /// A JetStream connection that keeps its server running: the logs it opens hold the
    /// server too, so an adapter outlives the backend value it was opened on.
    #[derive(Debug, Clone)]
    pub struct Backend {
        js: JetStream,
        server: Arc<NatsServer>,
    }

    impl LogBackend for Backend {
        fn open_model_log(
            &self,
            channel: &ChannelName,
            config: &CortexConfig,
        ) -> Result<OpenedLog, CortexError> {
            let opened = self.js.open_model_log(channel, config)?;
            Ok(OpenedLog {
                log: Arc::new(ServerLog {
                    log: opened.log,
                    _server: Arc::clone(&self.server),
                }),
                opened_here: opened.opened_here,
            })
        }
    }

    /// A JetStream log and the server it lives on.
    #[derive(Debug)]
    struct ServerLog {
        log: Arc<dyn CortexLog>,
        _server: Arc<NatsServer>,
    }

    impl CortexLog for ServerLog {
        fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
            self.log.append(payload)
        }
        fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
            self.log.append_batch(payloads)
        }
        fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
            self.log.read_range(start, end)
        }
        fn tail(&self, from: u64) -> LogTail {
            self.log.tail(from)
        }
        fn next_seq(&self) -> u64 {
            self.log.next_seq()
        }
        fn first_seq(&self) -> u64 {
            self.log.first_seq()
        }
        fn sync(&self) -> Result<(), RedexError> {
            self.log.sync()
        }
        fn close(&self) -> Result<(), RedexError> {
            self.log.close()
        }
    }
}
