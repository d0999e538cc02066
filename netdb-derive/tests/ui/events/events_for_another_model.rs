use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", events = NoteEvent)]
struct Task {
    id: u64,
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/notes", events = NoteEvent)]
struct Note {
    id: u64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexEvents)]
#[cortex(model = Note)]
enum NoteEvent {
    #[cortex(dispatch = 1)]
    Put { id: u64, text: String },
}

impl ApplyEvent<Note> for NoteEvent {
    fn apply(self, _: &mut TableMut<'_, Note>, _: &EventContext) -> Result<(), ApplyError> {
        Ok(())
    }
}

fn main() {}
