use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks")]
struct Task {
    #[cortex(id)]
    key: String,
    #[cortex(id)]
    number: u64,
}

fn main() {}
