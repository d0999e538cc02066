use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {
    __netdb_from: String,
}

fn main() {}
