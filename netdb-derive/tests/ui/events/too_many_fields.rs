use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", events = TaskEvent)]
struct Task {
    id: u64,
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexEvents)]
#[cortex(model = Task)]
enum TaskEvent {
    #[cortex(dispatch = 1)]
    Create(
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
        u8,
    ),
}

impl ApplyEvent<Task> for TaskEvent {
    fn apply(self, _: &mut TableMut<'_, Task>, _: &EventContext) -> Result<(), ApplyError> {
        Ok(())
    }
}

fn main() {}
