//! The seed's tasks model ([`netdb_models::tasks`]) in the crash harness: a deterministic
//! stream of create / rename / complete / delete events, written with the typed writes of
//! [`TasksAdapter`], and the reference fold the recovered state is checked against.
//!
//! The event at `seq` of a log written with seed `seed` is [`task_event`]`(seed, seq)`.
//! Ids come from a small set ([`TASK_IDS`]), so renames, completions and deletes mostly hit
//! a task that exists and creates often replace one. Titles vary in length (empty to a few
//! hundred bytes, some with multi-byte characters), so events range from inline-sized index
//! records to data-file payloads. Rows carry the log's timestamps (`created_ns`,
//! `updated_ns`): the reference fold takes them from the recovered events, so a replay that
//! did not restore the stored timestamps would differ.

use std::collections::BTreeMap;

use netdb_models::TasksAdapter;
use netdb_models::tasks::{Task, TaskEvent, TaskFilter, TaskOrderBy, TaskStatus};
use netdb_runtime::cortex::{CortexAdapter, CortexError, Table};

use crate::crash::CrashModel;
use crate::mix64;

/// How many distinct task ids the stream uses.
pub const TASK_IDS: u64 = 64;

const WORDS: &[&str] = &[
    "write",
    "the",
    "docs",
    "ship",
    "fix",
    "crash",
    "soak",
    "réviser",
    "日本語",
    "🦀",
    "log",
    "fold",
    "snapshot",
    "tail",
    "watch",
    "index",
    "",
    "a",
];

/// A title derived from `h`: 0 to about 60 words.
pub fn task_title(h: u64) -> String {
    let words = match h % 8 {
        0 => 0,
        1..=5 => 1 + (h >> 3) % 6,
        _ => (h >> 3) % 64,
    };
    let mut title = String::new();
    let mut x = h;
    for i in 0..words {
        x = mix64(x ^ i);
        if i > 0 {
            title.push(' ');
        }
        title.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    title
}

/// The event at `seq` of the stream with `seed`: about 35 % creates, 30 % renames, 20 %
/// completions and 15 % deletes.
pub fn task_event(seed: u64, seq: u64) -> TaskEvent {
    let h = mix64(mix64(seed ^ 0x7A5C_0000_0000_0001) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let id = (h >> 8) % TASK_IDS;
    let title = || task_title(mix64(h));
    match h % 20 {
        0..=6 => TaskEvent::Create { id, title: title() },
        7..=12 => TaskEvent::Rename { id, title: title() },
        13..=16 => TaskEvent::Complete { id },
        _ => TaskEvent::Delete { id },
    }
}

/// Writes `event` with the tasks adapter's typed write (`create`, `rename`, `complete`,
/// `delete`); returns its seq.
pub fn write_task(tasks: &TasksAdapter, event: &TaskEvent) -> Result<u64, CortexError> {
    match event {
        TaskEvent::Create { id, title } => tasks.create(*id, title.as_str()),
        TaskEvent::Rename { id, title } => tasks.rename(*id, title.as_str()),
        TaskEvent::Complete { id } => tasks.complete(*id),
        TaskEvent::Delete { id } => tasks.delete(*id),
    }
}

/// Applies `event`, stored at `ts`, to a plain map of tasks: what the tasks model's fold
/// does, written independently of it.
pub fn reference_apply(state: &mut BTreeMap<u64, Task>, event: &TaskEvent, ts: u64) {
    match event {
        TaskEvent::Create { id, title } => {
            state.insert(
                *id,
                Task {
                    id: *id,
                    title: title.clone(),
                    status: TaskStatus::Pending,
                    created_ns: ts,
                    updated_ns: ts,
                },
            );
        }
        TaskEvent::Rename { id, title } => {
            if let Some(t) = state.get_mut(id) {
                t.title.clone_from(title);
                t.updated_ns = ts;
            }
        }
        TaskEvent::Complete { id } => {
            if let Some(t) = state.get_mut(id) {
                t.status = TaskStatus::Completed;
                t.updated_ns = ts;
            }
        }
        TaskEvent::Delete { id } => {
            state.remove(id);
        }
    }
}

/// The adapter's rows, by id: what the tests compare with a reference fold.
pub fn state_map(tasks: &TasksAdapter) -> BTreeMap<u64, Task> {
    tasks
        .state()
        .read()
        .iter()
        .map(|t| (t.id, t.clone()))
        .collect()
}

/// Checks the tasks table's indexes against its rows: the status counts the index answers,
/// and the order by `created_ns` the ordered index gives.
pub fn check_tasks_table(table: &Table<Task>) -> Result<(), String> {
    for status in [TaskStatus::Pending, TaskStatus::Completed] {
        let filter = TaskFilter {
            status: Some(status),
            ..Default::default()
        };
        let rows = table.iter().filter(|t| t.status == status).count();
        let indexed = table.count_where(&filter);
        let queried = table.query().where_status(status).count();
        if (indexed, queried) != (rows, rows) {
            return Err(format!(
                "{status:?}: {rows} rows, but count_where says {indexed} and the query {queried}"
            ));
        }
    }
    let by_created: Vec<(u64, u64)> = table
        .query()
        .order_by(TaskOrderBy::CreatedAsc)
        .iter()
        .map(|t| (t.created_ns, t.id))
        .collect();
    let mut want: Vec<(u64, u64)> = table.iter().map(|t| (t.created_ns, t.id)).collect();
    want.sort_unstable();
    if by_created != want {
        return Err(format!(
            "order_by(CreatedAsc) gives {} rows out of order (or missing) of {}",
            by_created.len(),
            want.len()
        ));
    }
    Ok(())
}

/// The crash harness's view of the tasks model.
impl CrashModel for Task {
    fn event(seed: u64, seq: u64) -> TaskEvent {
        task_event(seed, seq)
    }

    fn write(adapter: &CortexAdapter<Task>, event: &TaskEvent) -> Result<u64, CortexError> {
        write_task(&TasksAdapter::from(adapter.clone()), event)
    }

    fn reference_apply(state: &mut BTreeMap<u64, Task>, event: &TaskEvent, ts: u64) {
        reference_apply(state, event, ts);
    }

    fn check_table(table: &Table<Task>) -> Result<(), String> {
        check_tasks_table(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdb_runtime::cortex::CortexEvent;

    #[test]
    fn events_round_trip_and_vary() {
        let mut kinds = [0u32; 4];
        let (mut empty, mut long) = (0, 0);
        for seq in 0..5_000 {
            let e = task_event(3, seq);
            assert_eq!(e, task_event(3, seq));
            let mut body = Vec::new();
            e.encode_body(&mut body).unwrap();
            assert_eq!(TaskEvent::decode_body(e.dispatch(), 1, &body).unwrap(), e);
            match &e {
                TaskEvent::Create { title, .. } | TaskEvent::Rename { title, .. } => {
                    empty += usize::from(title.is_empty());
                    long += usize::from(title.len() > 200);
                }
                _ => {}
            }
            kinds[e.dispatch() as usize - 1] += 1;
        }
        assert!(kinds.iter().all(|&k| k > 500), "{kinds:?}");
        assert!(empty > 50 && long > 50, "{empty} empty, {long} long titles");
        let mut state = BTreeMap::new();
        for seq in 0..5_000 {
            reference_apply(&mut state, &task_event(3, seq), seq);
        }
        assert!(!state.is_empty() && state.len() as u64 <= TASK_IDS);
        assert!(state.values().any(|t| t.status == TaskStatus::Completed));
    }
}
