use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {
    tasks: String,
}

fn main() {}
