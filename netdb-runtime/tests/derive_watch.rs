//! Watches built with the generated `<M>Watch` builders (`adapter.watch().where_*(..)`):
//! the first emission is the current result, an unchanged result is not emitted again, and
//! every typed write that changes the result is seen.
//!
//! "Nothing was emitted" is proven without sleeping: the tests run on a current-thread
//! runtime, where the fold applies a batch and hands it to the watchers in one step, so once
//! `wait_for_seq` returns every batch up to that seq has reached the watchers, and a poll
//! that returns `Pending` means no result is waiting.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use netdb_runtime::cortex::WatchStream;
use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    Todo,
    Doing,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-watch/cards")]
pub struct Card {
    pub id: u64,
    /// Contains: a watch on it has no route (re-evaluated by matching).
    #[cortex(filter)]
    pub title: String,
    /// Eq with a hash index: routed.
    #[cortex(filter, index)]
    pub lane: Lane,
    /// Membership with an inverted index: routed.
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    /// Option: eq is routed, some / none is not.
    #[cortex(filter, index(hash))]
    pub owner: Option<String>,
    /// Range with an ordered index, and an ordering.
    #[cortex(filter, index, order_by = "Points")]
    pub points: u32,
}

/// A safety net only: no test relies on it for its result.
const SAFETY: Duration = Duration::from_secs(20);

fn card(id: u64, lane: Lane, points: u32) -> Card {
    Card {
        id,
        title: format!("card {id}"),
        lane,
        tags: Vec::new(),
        owner: None,
        points,
    }
}

fn ids(rows: &[Card]) -> Vec<u64> {
    rows.iter().map(|c| c.id).collect()
}

async fn next(s: &mut WatchStream<Card>) -> Vec<u64> {
    let rows = tokio::time::timeout(SAFETY, s.next())
        .await
        .expect("safety timeout: the watch yielded nothing")
        .expect("the watch ended");
    ids(&rows)
}

/// Whether the stream has nothing to yield right now (one poll).
fn idle(s: &mut WatchStream<Card>) -> bool {
    match s.next().now_or_never() {
        None => true,
        Some(Some(rows)) => panic!("unexpected emission: {:?}", ids(&rows)),
        Some(None) => panic!("unexpected end of stream"),
    }
}

async fn settle(cards: &CardsAdapter, seq: u64) {
    tokio::time::timeout(SAFETY, cards.wait_for_seq(seq))
        .await
        .expect("safety timeout: wait_for_seq")
        .unwrap();
}

async fn seeded() -> CardsAdapter {
    let redex = Redex::new();
    let cards = CardsAdapter::open(&redex, 1).unwrap();
    let mut last = 0;
    for (id, lane, points) in [
        (1, Lane::Todo, 5),
        (2, Lane::Todo, 8),
        (3, Lane::Doing, 3),
        (4, Lane::Todo, 1),
        (5, Lane::Done, 9),
    ] {
        last = cards.insert(card(id, lane, points)).unwrap();
    }
    settle(&cards, last).await;
    cards
}

#[tokio::test]
async fn first_emission_dedup_and_updates_of_an_eq_watch_with_order_and_limit() {
    let cards = seeded().await;
    let mut top = cards
        .watch()
        .where_lane(Lane::Todo)
        .order_by(CardOrderBy::PointsDesc)
        .limit(2)
        .stream();
    // First emission: the current result, at the folded seq.
    assert_eq!(next(&mut top).await, [2, 1]);
    assert_eq!(top.folded_seq(), Some(4));
    assert!(idle(&mut top));

    // A row in another lane: not even re-evaluated, nothing emitted.
    let s = cards.insert(card(6, Lane::Done, 100)).unwrap();
    settle(&cards, s).await;
    assert!(idle(&mut top));
    // A matching row below the limit: re-evaluated, same result, not emitted again.
    let s = cards.insert(card(7, Lane::Todo, 0)).unwrap();
    settle(&cards, s).await;
    assert!(idle(&mut top));
    // A patch that sets a field to the value it has: the row is equal, nothing emitted.
    let s = cards.update(CardPatch::new(2).points(8)).unwrap();
    settle(&cards, s).await;
    assert!(idle(&mut top));

    // A patch that moves a row into the top two.
    let s = cards.update(CardPatch::new(4).points(50)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [4, 2]);
    assert_eq!(top.folded_seq(), Some(s));
    // A patch that changes a shown row's other field: the result's rows differ.
    let s = cards.update(CardPatch::new(4).title("renamed")).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [4, 2]);
    // A patch that moves a shown row out of the filter.
    let s = cards.update(CardPatch::new(2).lane(Lane::Doing)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [4, 1]);
    // A delete, and an insert replacing a row into the filter.
    let s = cards.delete(4).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [1, 7]);
    let s = cards.insert(card(3, Lane::Todo, 4)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [1, 3]);
    // Several writes before the consumer looks: only the latest result.
    cards.update(CardPatch::new(7).points(60)).unwrap();
    cards.update(CardPatch::new(1).points(70)).unwrap();
    let s = cards.delete(3).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut top).await, [1, 7]);
    assert!(idle(&mut top));

    // The stream ends when the adapter closes.
    cards.close().unwrap();
    let end = tokio::time::timeout(SAFETY, top.next()).await.unwrap();
    assert!(end.is_none());
}

#[tokio::test]
async fn every_builder_family_watches_its_clause() {
    let cards = seeded().await;
    let s = cards
        .update(
            CardPatch::new(1)
                .tags(vec!["red".into()])
                .owner(Some("ann".into())),
        )
        .unwrap();
    settle(&cards, s).await;

    let mut tagged = cards.watch().where_tag("red").stream();
    let mut any_tag = cards.watch().where_any_tag(["blue", "green"]).stream();
    let mut all_tags = cards.watch().where_all_tags(["red", "blue"]).stream();
    let mut unowned = cards
        .watch()
        .where_owner_none()
        .where_lane(Lane::Todo)
        .stream();
    let mut anns = cards.watch().where_owner("ann").stream();
    let mut titled = cards.watch().where_title_contains("CARD 5").stream();
    let mut mid = cards.watch().where_points_between(4, 8).stream();
    let mut lanes = cards
        .watch()
        .where_lane_in([Lane::Doing, Lane::Done])
        .order_by(CardOrderBy::IdDesc)
        .offset(1)
        .stream();
    assert_eq!(next(&mut tagged).await, [1]);
    assert_eq!(next(&mut any_tag).await, Vec::<u64>::new());
    assert_eq!(next(&mut all_tags).await, Vec::<u64>::new());
    assert_eq!(next(&mut unowned).await, [2, 4]);
    assert_eq!(next(&mut anns).await, [1]);
    assert_eq!(next(&mut titled).await, [5]);
    assert_eq!(next(&mut mid).await, [1, 2]);
    assert_eq!(next(&mut lanes).await, [3]);

    // Card 2 gets tags red + blue and an owner.
    let s = cards
        .update(
            CardPatch::new(2)
                .tags(vec!["blue".into(), "red".into()])
                .owner(Some("bob".into())),
        )
        .unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut tagged).await, [1, 2]);
    assert_eq!(next(&mut any_tag).await, [2]);
    assert_eq!(next(&mut all_tags).await, [2]);
    assert_eq!(next(&mut unowned).await, [4]);
    assert!(idle(&mut anns));
    assert!(idle(&mut titled));
    // A shown row changed fields the filter does not test: the rows differ, so it is news.
    assert_eq!(next(&mut mid).await, [1, 2]);
    assert!(idle(&mut lanes));

    // Card 5 is renamed, moves to Todo and into the points range.
    let s = cards
        .update(
            CardPatch::new(5)
                .title("Card 55")
                .lane(Lane::Todo)
                .points(6),
        )
        .unwrap();
    settle(&cards, s).await;
    assert!(idle(&mut tagged));
    assert_eq!(next(&mut titled).await, [5]);
    assert_eq!(next(&mut mid).await, [1, 2, 5]);
    assert_eq!(next(&mut unowned).await, [4, 5]);
    assert_eq!(
        next(&mut lanes).await,
        Vec::<u64>::new(),
        "only card 3 left, skipped"
    );

    // Removing the element from an inverted-index row.
    let s = cards.update(CardPatch::new(1).tags(vec![])).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut tagged).await, [2]);
    assert!(idle(&mut any_tag));
    assert!(idle(&mut all_tags));
    assert_eq!(next(&mut anns).await, [1]);
    assert_eq!(next(&mut mid).await, [1, 2, 5]);
    assert!(idle(&mut unowned));
    assert!(idle(&mut lanes));
    // A delete reaches every watch that showed the row.
    let s = cards.delete(2).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut tagged).await, Vec::<u64>::new());
    assert_eq!(next(&mut any_tag).await, Vec::<u64>::new());
    assert_eq!(next(&mut all_tags).await, Vec::<u64>::new());
    assert_eq!(next(&mut mid).await, [1, 5]);
    assert!(idle(&mut unowned));
    assert!(idle(&mut anns));
    assert!(idle(&mut titled));
    assert!(idle(&mut lanes));
}

#[tokio::test]
async fn struct_filters_closures_and_snapshot_and_stream() {
    let cards = seeded().await;
    // The plain filter struct, a closure over it, and the typed builders compose.
    let (now, mut stream) = cards
        .watch()
        .with_filter(CardFilter {
            lane_in: Some(vec![Lane::Todo, Lane::Doing]),
            ..Default::default()
        })
        .filter(|f| {
            f.points_range = Some((std::ops::Bound::Included(3), std::ops::Bound::Unbounded))
        })
        .where_title_contains("card")
        .order_by(CardOrderBy::PointsAsc)
        .snapshot_and_stream();
    assert_eq!(ids(&now), [3, 1, 2]);
    // The current result is not repeated.
    assert!(idle(&mut stream));
    // The same through the adapter's `snapshot_and_watch`, which takes the generated watch.
    let (again, mut second) = cards.snapshot_and_watch(cards.watch().where_lane(Lane::Doing));
    assert_eq!(ids(&again), [3]);
    assert!(idle(&mut second));

    let s = cards.update(CardPatch::new(4).points(3)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut stream).await, [3, 4, 1, 2]);
    assert!(idle(&mut second));
    let s = cards.update(CardPatch::new(3).lane(Lane::Done)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut stream).await, [4, 1, 2]);
    assert_eq!(next(&mut second).await, Vec::<u64>::new());

    // Dropping a stream unregisters it; the others go on.
    drop(second);
    let s = cards.insert(card(9, Lane::Doing, 4)).unwrap();
    settle(&cards, s).await;
    assert_eq!(next(&mut stream).await, [4, 9, 1, 2]);
}
