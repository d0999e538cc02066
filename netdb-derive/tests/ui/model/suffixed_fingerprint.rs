use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskV1 {
    id: u64,
}

impl From<TaskV1> for Task {
    fn from(v: TaskV1) -> Task {
        Task { id: v.id, title: String::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", schema = 2, migrate(from = 1, with = TaskV1, fingerprint = 0xFINGERPRINT))]
struct Task {
    id: u64,
    title: String,
}

fn main() {}
