use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks")]
struct Task<T> {
    id: u64,
    value: T,
}

fn main() {}
