use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db {
    #[netdb(confg = make)]
    tasks: String,
}

fn main() {}
