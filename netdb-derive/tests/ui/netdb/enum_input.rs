use netdb_runtime::NetDb;

#[derive(NetDb)]
enum Db {
    Tasks,
}

fn main() {}
