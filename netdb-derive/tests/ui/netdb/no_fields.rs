use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {}

fn main() {}
