use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {
    snapshot: String,
}

fn main() {}
