use netdb_runtime::NetDb;

#[derive(NetDb)]
struct Db<A> {
    tasks: A,
}

fn main() {}
