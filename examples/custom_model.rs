//! Your own model, from scratch: an inventory of items, declared with `#[derive(CortexModel)]`
//! on a plain struct. The derive generates the filters, orderings, indexes, the query and
//! watch builders, and the built-in insert / update (patch) / delete writes.
//!
//! It runs in memory (`Redex::new()`): nothing is written to disk. For a persistent
//! version, open `Redex::with_persistent_dir(dir)` instead, as the quickstart does.
//!
//! ```text
//! cargo run -p netdb-examples --example custom_model
//! ```

use std::error::Error;

use futures_util::{FutureExt, StreamExt};
use netdb_runtime::cortex::WatchStream;
use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// An item in the inventory. Each `#[cortex(...)]` attribute asks for something:
/// `filter` generates `where_*` builders, `order_by` an ordering, `index` a secondary index
/// that queries and watches on the field use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "inventory/items")]
pub struct Item {
    /// The row key: a field named `id` is the id.
    pub id: u64,
    /// `where_name_contains("..")`: a substring, ignoring case.
    #[cortex(filter(contains))]
    pub name: String,
    /// `where_category(..)`, `where_category_in(..)` and `where_category_contains(..)`,
    /// with a hash index for the exact matches.
    #[cortex(filter, index)]
    pub category: String,
    /// The price in cents (an integer: floats cannot be ordered or indexed).
    /// `where_price_cents_between(lo, hi)` and the other range builders,
    /// `ItemOrderBy::PriceCentsAsc` / `PriceCentsDesc`, and an ordered index for both.
    #[cortex(filter(range), order_by, index)]
    pub price_cents: u64,
    /// `where_tag(..)`, `where_any_tag(..)`, `where_all_tags(..)`, with an inverted index.
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    /// `where_supplier_some()`, `where_supplier_none()`, and `where_supplier(..)` on the
    /// value inside.
    #[cortex(filter)]
    pub supplier: Option<String>,
}

// Next to `Item`, the derive generated `ItemsAdapter` (open it on a `Redex`; it has the typed
// writes `insert`, `update` and `delete`), `ItemPatch` (a change to some fields of one row),
// `ItemFilter`, `ItemOrderBy`, `ItemQuery` and `ItemWatch`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let redex = Redex::new(); // in memory
    let items = ItemsAdapter::open(&redex, 1)?; // 1: this writer's origin hash
    println!("Opened the inventory/items model in memory.");

    // A watch on one category, started before any write: its first result is empty.
    let mut garden = items
        .watch()
        .where_category("garden")
        .order_by(ItemOrderBy::PriceCentsAsc)
        .stream();
    show_watch(&mut garden);

    // Built-in writes: `insert` takes a whole row and returns the event's sequence number.
    println!("\nInserting 6 items.");
    #[rustfmt::skip]
    let rows = [
        item(1, "Claw hammer",      "tools",   1_499, &["steel"],            Some("Acme")),
        item(2, "Cordless drill",   "tools",   8_900, &["battery", "power"], Some("Volt")),
        item(3, "Garden hose 25 m", "garden",  2_450, &["summer"],           None),
        item(4, "Pruning shears",   "garden",  1_899, &["steel"],            Some("Acme")),
        item(5, "Tape measure",     "tools",     650, &[],                   None),
        item(6, "Lawn mower",       "garden", 24_900, &["power", "summer"],  Some("Volt")),
    ];
    let mut last_seq = 0;
    for row in rows {
        last_seq = items.insert(row)?;
    }
    // The fold applies events in the background: wait for the last one to read your writes.
    items.wait_for_seq(last_seq).await?;
    // A watch delivers the latest result: six inserts, one update.
    show_watch(&mut garden);

    // Queries read the state under a read lock: take it, query, let it go.
    {
        let state = items.state();
        let table = state.read();
        println!("\nAll items, cheapest first:");
        table
            .query()
            .order_by(ItemOrderBy::PriceCentsAsc)
            .for_each(|i| println!("  {}", describe(i)));

        println!("Tools:");
        table
            .query()
            .where_category("tools")
            .for_each(|i| println!("  {}", describe(i)));

        println!("Between $10.00 and $30.00, most expensive first:");
        table
            .query()
            .where_price_cents_between(1_000, 3_000)
            .order_by(ItemOrderBy::PriceCentsDesc)
            .for_each(|i| println!("  {}", describe(i)));

        println!("The 2 most expensive items tagged \"power\":");
        table
            .query()
            .where_tag("power")
            .order_by(ItemOrderBy::PriceCentsDesc)
            .limit(2)
            .for_each(|i| println!("  {}", describe(i)));

        let steel_from_acme = table
            .query()
            .where_tag("steel")
            .where_supplier("Acme")
            .count();
        let no_supplier = table.query().where_supplier_none().count();
        let shears = table.query().where_name_contains("SHEARS").first();
        println!("Tagged \"steel\" and supplied by Acme: {steel_from_acme} items");
        println!("Without a supplier: {no_supplier} items");
        if let Some(i) = shears {
            println!("Name contains \"shears\": {}", describe(&i));
        }
        if let Some(i) = table.find_unique(&3) {
            println!("Item 3, by id: {}", i.name);
        }
    }

    // `update` takes a patch: `ItemPatch::new(id)` changes nothing; each setter sets one
    // field. The garden watch prints only when its result changes.
    println!("\nThe hose goes on sale and gets a supplier (item 3).");
    let seq = items.update(
        ItemPatch::new(3)
            .price_cents(1_950)
            .supplier(Some("Hoseco".into())),
    )?;
    items.wait_for_seq(seq).await?;
    show_watch(&mut garden);

    println!("The drill is re-tagged (item 2, a tool: the garden watch does not change).");
    let seq = items.update(ItemPatch::new(2).tags(vec!["battery".into(), "sale".into()]))?;
    items.wait_for_seq(seq).await?;
    show_watch(&mut garden);

    println!("The pruning shears move to the tools category (item 4).");
    let seq = items.update(ItemPatch::new(4).category("tools"))?;
    items.wait_for_seq(seq).await?;
    show_watch(&mut garden);

    println!("The lawn mower is sold out and removed (item 6).");
    let seq = items.delete(6)?;
    items.wait_for_seq(seq).await?;
    show_watch(&mut garden);

    {
        let state = items.state();
        let table = state.read();
        println!("\nThe inventory now, by id:");
        table.iter().for_each(|i| println!("  {}", describe(i)));
        println!(
            "{} items: {} tools, {} garden.",
            table.len(),
            table.query().where_category("tools").count(),
            table.query().where_category("garden").count()
        );
    }

    // Closing stops the fold; watch streams end.
    items.close()?;
    println!("\nClosed the model.");
    show_watch(&mut garden);
    println!("Done.");
    Ok(())
}

/// Prints what the garden watch has to say now. After `wait_for_seq`, a watch whose result
/// changed already holds the new result, so `now_or_never` never misses one; a watch whose
/// result did not change has nothing to say.
fn show_watch(watch: &mut WatchStream<Item>) {
    match watch.next().now_or_never() {
        Some(Some(rows)) => {
            let names: Vec<String> = rows
                .iter()
                .map(|i| format!("{} {}", i.name, dollars(i.price_cents)))
                .collect();
            if names.is_empty() {
                println!("  [garden watch] no garden items");
            } else {
                println!("  [garden watch] {}", names.join(", "));
            }
        }
        Some(None) => println!("  [garden watch] ended"),
        None => println!("  [garden watch] (no change)"),
    }
}

fn item(
    id: u64,
    name: &str,
    category: &str,
    price_cents: u64,
    tags: &[&str],
    supplier: Option<&str>,
) -> Item {
    Item {
        id,
        name: name.into(),
        category: category.into(),
        price_cents,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        supplier: supplier.map(Into::into),
    }
}

fn describe(i: &Item) -> String {
    format!(
        "#{} {:<18} {:<7} {:>8}  tags [{}]  supplier {}",
        i.id,
        i.name,
        i.category,
        dollars(i.price_cents),
        i.tags.join(", "),
        i.supplier.as_deref().unwrap_or("-")
    )
}

fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}
