use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks")]
struct Task {
    id: u64,
    #[cortex(filter, singular = "tag")]
    tags: String,
}

fn main() {}
