use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {
    r#close: String,
}

fn main() {}
