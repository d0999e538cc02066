use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db(u8);

fn main() {}
