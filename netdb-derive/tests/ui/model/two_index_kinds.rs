use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks")]
struct Task {
    id: u64,
    #[cortex(filter, index(hash, ordered))]
    rank: u64,
}

fn main() {}
