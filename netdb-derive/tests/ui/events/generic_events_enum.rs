use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", events = TaskEvent::<String>)]
struct Task {
    id: u64,
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexEvents)]
#[cortex(model = Task)]
enum TaskEvent<T> {
    #[cortex(dispatch = 1)]
    Set { id: u64, value: T },
}

impl<T> ApplyEvent<Task> for TaskEvent<T> {
    fn apply(self, _: &mut TableMut<'_, Task>, _: &EventContext) -> Result<(), ApplyError> {
        Ok(())
    }
}

fn main() {}
