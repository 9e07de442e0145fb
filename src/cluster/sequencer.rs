//! The per-room order of stored messages on one node of a cluster.
//!
//! Every stored message has its room's next number (`seq`), drawn in the
//! storing transaction. Messages reach a node from its own writer and, over
//! the bus, from the others, in no particular order between the two: the
//! sequencer holds a message until every earlier number of its room has
//! been delivered. A number that does not come within [`GAP_WAIT`] (its bus
//! message was lost, or its node died between commit and publishing) is
//! asked of the store; what the store answers is delivered in its place,
//! and a number the store no longer has (the message was deleted) is passed
//! over. A number below the room's next has been delivered already (the
//! store answered before the bus did): it is dropped.
//!
//! A message whose bus copy is lost with no later message in its room
//! would leave no gap to see: so the node asks the store, every
//! [`TAIL_POLL`], which rooms have messages newer than the last it knew of
//! ([`Sequencer::expect`]); a number told that way is waited for like one
//! behind a held message.
//!
//! Where a room starts is asked of the store too: the first message a node
//! sees of a room waits while the store is asked for the room's messages
//! stored since the node started (newer than `start_id`) and numbered
//! before it. Messages stored before the node started are not pushed (its
//! clients catch up with history cursors when they connect).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

pub use crate::job::Gap;

/// How long a missing number is waited for before the store is asked.
pub const GAP_WAIT: Duration = Duration::from_millis(200);
/// How often the store is asked for the rooms' newest numbers.
pub const TAIL_POLL: Duration = Duration::from_secs(1);
/// Held messages past which a room's gap is asked of the store at once.
const MAX_HELD_PER_ROOM: usize = 10_000;

/// The messages of rooms, in order. It remembers, for every room with a
/// message since the node started, the next number (a few dozen bytes a
/// room): forgetting one would deliver its messages again.
pub struct Sequencer<T> {
    rooms: HashMap<i64, RoomLine<T>>,
    /// The rooms holding messages: the only ones the reactor's every pass
    /// looks at for gaps (a node may know many rooms).
    holding: HashSet<i64>,
    gap_wait: Duration,
    /// The newest message id when the node started.
    start_id: i64,
}

/// One room: the next number to deliver, and what waits for it.
struct RoomLine<T> {
    /// `None` until the store said where the room starts.
    next: Option<i64>,
    held: BTreeMap<i64, T>,
    /// The newest number the store said the room has (0: none told).
    expected: i64,
    /// When the oldest gap began; `None` while nothing is waited for.
    gap_since: Option<Instant>,
    /// The store was asked for the gap and has not answered.
    asked: bool,
}

impl<T> Sequencer<T> {
    /// A sequencer for a node that started when `start_id` was the newest
    /// message id.
    pub fn new(start_id: i64) -> Sequencer<T> {
        Sequencer {
            rooms: HashMap::new(),
            holding: HashSet::new(),
            gap_wait: GAP_WAIT,
            start_id,
        }
    }

    /// Takes message `seq` of a room; returns what may be delivered now, in order.
    pub fn offer(&mut self, room_id: i64, seq: i64, item: T, now: Instant) -> Vec<T> {
        let line = self.rooms.entry(room_id).or_insert_with(RoomLine::new);
        if line.next.is_some_and(|next| seq < next) {
            return Vec::new();
        }
        line.held.insert(seq, item);
        let ready = line.release();
        self.note_waiting(room_id, now);
        ready
    }

    /// The store says a room's newest message is number `seq`: if this node
    /// has not delivered it, it is waited for like a gap (its bus copy may
    /// still come) and then asked of the store.
    pub fn expect(&mut self, room_id: i64, seq: i64, now: Instant) {
        let line = self.rooms.entry(room_id).or_insert_with(RoomLine::new);
        if line.next.is_some_and(|next| seq < next) || seq <= line.expected {
            return;
        }
        line.expected = seq;
        self.note_waiting(room_id, now);
    }

    /// Keeps `holding` and the room's gap clock true to what it waits for.
    fn note_waiting(&mut self, room_id: i64, now: Instant) {
        let Some(line) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if line.waiting() {
            line.gap_since.get_or_insert(now);
            self.holding.insert(room_id);
        } else {
            line.gap_since = None;
            self.holding.remove(&room_id);
        }
    }

    /// The gaps waited for long enough (or holding too much), and the
    /// rooms whose start is unknown, each asked once.
    pub fn due_gaps(&mut self, now: Instant) -> Vec<Gap> {
        let mut due = Vec::new();
        for &room_id in &self.holding {
            let Some(line) = self.rooms.get_mut(&room_id) else {
                continue;
            };
            let Some(since) = line.gap_since else { continue };
            let waited = now >= since + self.gap_wait || line.held.len() >= MAX_HELD_PER_ROOM;
            if line.asked || (line.next.is_some() && !waited) {
                continue;
            }
            // Up to the first held message, or past the newest the store told.
            let before = match line.held.first_key_value() {
                Some((&first_held, _)) => first_held,
                None => line.expected + 1,
            };
            line.asked = true;
            due.push(match line.next {
                Some(next) => Gap {
                    room_id,
                    after: next - 1,
                    before,
                    after_id: 0,
                },
                None => Gap {
                    room_id,
                    after: 0,
                    before,
                    after_id: self.start_id,
                },
            });
        }
        due
    }

    /// The store's answer to `gap`: the messages it still has, in order.
    /// They are delivered, the gap is passed over, and what waited behind it
    /// follows; returns all of it in order.
    pub fn filled(&mut self, gap: Gap, found: Vec<(i64, T)>, now: Instant) -> Vec<T> {
        let Some(line) = self.rooms.get_mut(&gap.room_id) else {
            return Vec::new();
        };
        line.asked = false;
        let mut next = line.next.unwrap_or(0);
        let mut ready = Vec::new();
        for (seq, item) in found {
            if seq >= next && seq < gap.before {
                ready.push(item);
                next = seq + 1;
            }
        }
        // What the store no longer has is passed over, and copies of what
        // it answered are dropped.
        line.next = Some(next.max(gap.before));
        line.held.retain(|&seq, _| seq >= next.max(gap.before));
        ready.extend(line.release());
        // What is still waited for waits anew.
        line.gap_since = None;
        self.note_waiting(gap.room_id, now);
        ready
    }

    /// When the next gap falls due, if one is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.holding
            .iter()
            .filter_map(|room_id| self.rooms.get(room_id))
            .filter(|line| !line.asked)
            .filter_map(|line| match line.next {
                Some(_) => line.gap_since.map(|since| since + self.gap_wait),
                None => line.gap_since,
            })
            .min()
    }
}

impl<T> RoomLine<T> {
    fn new() -> RoomLine<T> {
        RoomLine {
            next: None,
            held: BTreeMap::new(),
            expected: 0,
            gap_since: None,
            asked: false,
        }
    }

    /// Whether a message is held, or one the store told of is not delivered.
    fn waiting(&self) -> bool {
        !self.held.is_empty() || self.next.map_or(self.expected > 0, |next| self.expected >= next)
    }

    /// Takes out the held messages that now follow without a gap.
    fn release(&mut self) -> Vec<T> {
        let mut ready = Vec::new();
        let Some(next) = &mut self.next else {
            return ready;
        };
        while let Some(item) = self.held.remove(next) {
            ready.push(item);
            *next += 1;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequencer whose rooms 1, 2 and 7 start at message 1, 1 and 10.
    fn started(now: Instant) -> Sequencer<i64> {
        let mut s = Sequencer::new(100);
        for (room, first) in [(1, 1), (2, 1), (7, 10)] {
            assert!(
                s.offer(room, first, first, now).is_empty(),
                "the room's start is asked first"
            );
        }
        let gaps = s.due_gaps(now);
        assert_eq!(gaps.len(), 3, "at once");
        for gap in gaps {
            assert_eq!((gap.after, gap.after_id), (0, 100));
            assert_eq!(s.filled(gap, Vec::new(), now), vec![gap.before]);
        }
        s
    }

    #[test]
    fn a_room_starts_where_the_store_says() {
        let now = Instant::now();
        let mut s = Sequencer::new(100);
        assert!(s.offer(5, 4, 4, now).is_empty());
        let gaps = s.due_gaps(now);
        // An earlier one comes over the bus while the store is asked.
        assert!(s.offer(5, 3, 3, now).is_empty());
        assert_eq!(
            gaps,
            vec![Gap {
                room_id: 5,
                after: 0,
                before: 4,
                after_id: 100
            }]
        );
        // The store has 2 and 3 since the node started.
        assert_eq!(s.filled(gaps[0], vec![(2, 2), (3, 3)], now), vec![2, 3, 4]);
        assert_eq!(s.offer(5, 5, 5, now), vec![5]);
    }

    #[test]
    fn in_order_passes_through_and_repeats_are_dropped() {
        let now = Instant::now();
        let mut s = started(now);
        assert_eq!(s.offer(1, 2, 2, now), vec![2]);
        assert_eq!(s.offer(1, 2, 2, now), Vec::<i64>::new());
        assert_eq!(s.offer(2, 2, 2, now), vec![2]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_late_message_releases_those_behind_it() {
        let now = Instant::now();
        let mut s = started(now);
        assert!(s.offer(1, 3, 3, now).is_empty());
        assert!(s.offer(1, 4, 4, now).is_empty());
        assert_eq!(s.next_due(), Some(now + GAP_WAIT));
        assert!(s.due_gaps(now).is_empty(), "not yet");
        assert_eq!(s.offer(1, 2, 2, now), vec![2, 3, 4]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_gap_is_asked_of_the_store_once_and_filled() {
        let now = Instant::now();
        let mut s = started(now);
        s.offer(7, 14, 14, now);
        let later = now + GAP_WAIT;
        let gaps = s.due_gaps(later);
        assert_eq!(
            gaps,
            vec![Gap {
                room_id: 7,
                after: 10,
                before: 14,
                after_id: 0
            }]
        );
        assert!(s.due_gaps(later).is_empty(), "asked once");
        // 12 was deleted meanwhile: the store has 11 and 13.
        assert_eq!(
            s.filled(gaps[0], vec![(11, 11), (13, 13)], later),
            vec![11, 13, 14]
        );
        // The bus's late copies are dropped.
        assert!(s.offer(7, 12, 12, later).is_empty());
        assert_eq!(s.offer(7, 15, 15, later), vec![15]);
    }

    #[test]
    fn a_lost_last_message_is_found_by_the_rooms_newest_number() {
        let now = Instant::now();
        let mut s = started(now);
        // Room 1 delivered 1; the store says it has 3: nothing more came.
        s.expect(1, 3, now);
        s.expect(1, 3, now);
        assert_eq!(s.next_due(), Some(now + GAP_WAIT));
        assert!(s.due_gaps(now).is_empty(), "its bus copy may still come");
        let later = now + GAP_WAIT;
        let gaps = s.due_gaps(later);
        assert_eq!(
            gaps,
            vec![Gap {
                room_id: 1,
                after: 1,
                before: 4,
                after_id: 0
            }]
        );
        assert_eq!(s.filled(gaps[0], vec![(2, 2), (3, 3)], later), vec![2, 3]);
        assert_eq!(s.next_due(), None, "nothing more is waited for");
        // A number already delivered is no news.
        s.expect(1, 3, later);
        s.expect(2, 1, later);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_told_number_that_comes_over_the_bus_is_not_asked_for() {
        let now = Instant::now();
        let mut s = started(now);
        s.expect(2, 2, now);
        assert_eq!(s.offer(2, 2, 2, now), vec![2]);
        assert_eq!(s.next_due(), None);
        assert!(s.due_gaps(now + GAP_WAIT).is_empty());
    }

    #[test]
    fn a_room_first_heard_of_from_the_store_starts_where_the_store_says() {
        let now = Instant::now();
        let mut s = Sequencer::new(100);
        s.expect(9, 6, now);
        let gaps = s.due_gaps(now);
        assert_eq!(
            gaps,
            vec![Gap {
                room_id: 9,
                after: 0,
                before: 7,
                after_id: 100
            }],
            "asked at once, for what came since the node started"
        );
        assert_eq!(s.filled(gaps[0], vec![(6, 6)], now), vec![6]);
        assert_eq!(s.offer(9, 7, 7, now), vec![7]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_flood_behind_a_gap_is_asked_for_at_once() {
        let now = Instant::now();
        let mut s = started(now);
        for seq in 3..(3 + MAX_HELD_PER_ROOM as i64) {
            s.offer(1, seq, 0, now);
        }
        assert_eq!(s.due_gaps(now).len(), 1);
    }
}
