use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", events = TaskEvent)]
struct Task {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexEvents)]
#[cortex(model = Task)]
enum TaskEvent {
    #[cortex(dispatch = 1, no_write, write = "create_old")]
    CreateV0(u64),
}

impl ApplyEvent<Task> for TaskEvent {
    fn apply(self, t: &mut TableMut<'_, Task>, _: &EventContext) -> Result<(), ApplyError> {
        let TaskEvent::CreateV0(id) = self;
        t.insert(Task { id });
        Ok(())
    }
}

fn main() {}
