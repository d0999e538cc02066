//! The model behaviour suite ([`suite`], `tests/suite/mod.rs`) on the embedded log, RedEX:
//! fresh backends in memory, durable ones on a persistent directory. `netdb-tests` runs
//! the same suite on NATS JetStream (`tests/jetstream_models.rs`).

mod suite;

/// The backends the suite runs on: RedEX.
mod fixture {
    use netdb_runtime::redex::Redex;

    pub type Backend = Redex;

    /// RedEX is always available.
    pub struct Fixture;

    impl Fixture {
        pub fn start() -> Option<Fixture> {
            Some(Fixture)
        }

        /// A new in-memory RedEX.
        pub fn fresh(&self) -> Backend {
            Redex::new()
        }

        /// A temporary directory, removed when the `Durable` is dropped.
        pub fn durable(&self) -> Durable {
            Durable(tempfile::tempdir().expect("a temporary directory"))
        }
    }

    pub struct Durable(tempfile::TempDir);

    impl Durable {
        /// A new RedEX on the directory: what a restarted process opens.
        pub fn open(&self) -> Backend {
            Redex::with_persistent_dir(self.0.path()).expect("a RedEX on the directory")
        }
    }
}
