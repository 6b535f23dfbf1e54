//! How big the job makes things, from the number of agents: page buffers (the shared
//! cache's on top when it is on), how far the specialists' Parsers may run ahead, the
//! longest document an Aggregator assembles, the window of open documents, and how a
//! document is cut into ranges.

use crate::supervisor::GraphFlow;

/// The page-buffer size `swarm run` asks for.
pub(super) const BUFFER_SIZE: usize = 64 * 1024;

/// Two tasks queued per agent keep it busy while the supervisor refills (a range takes
/// milliseconds, a refill microseconds). A deeper queue binds work to an agent early, so
/// at the end of a run one agent still has several ranges while another is idle: with
/// 16, a 1,000-page document on 2 agents finished its last ranges on one agent, 50 ms
/// after the other.
pub(super) const QUEUE_DEPTH: u32 = 2;

/// The supervisor's page buffers (64 KiB) for `agents` agents: room for every agent's
/// queued inputs; each agent's own pool, for its replies, is half as many. Specialists
/// keep stage outputs there too, so they get more. Smaller is faster to set up and tear
/// down: the supervisor's pool is reserved (fallocate) while the first agents start.
pub(super) fn buffer_count(agents: u32, specialists: bool) -> u32 {
    if specialists {
        (agents * 128).max(1024)
    } else {
        (agents * 64).max(256)
    }
}

/// What generalists' shared cache may keep of replies: this many bytes, in page buffers
/// added to the supervisor's pool for it (so that it never takes the room lending needs).
pub(super) const CACHE_BYTES: u64 = 32 << 20;

/// Replies the cache keeps at most.
pub(super) const CACHE_ENTRIES: usize = 4096;

/// The supervisor's page buffers with the cache's on top.
pub(super) fn buffer_count_cached(agents: u32, specialists: bool, cache: bool) -> u32 {
    let extra = if cache && !specialists {
        (CACHE_BYTES / BUFFER_SIZE as u64) as u32
    } else {
        0
    };
    buffer_count(agents, specialists) + extra
}

/// How far specialists' Parsers run ahead: two ranges an agent at the Parsers keep every
/// stage busy, and no new range goes to them while the stage outputs waiting for the next
/// stage take a quarter of the supervisor's pool of `buffers`. Those outputs then grow (an
/// Extractor writes ten times what its Parser did); past half of the pool, kept outputs
/// go to the supervisor's memory, so no stage ever waits for another to make room.
pub(super) fn graph_flow(agents: u32, buffers: u32) -> GraphFlow {
    GraphFlow {
        sources: Some((agents as usize * 2).max(4)),
        edge_bytes: Some(u64::from(buffers / 4) * BUFFER_SIZE as u64),
    }
}

/// A line takes at most this much a page (the densest real page seen takes 18 KB).
const LINE_BYTES_A_PAGE: u64 = 64 * 1024;

/// The longest document an Aggregator assembles: its line must fit the Aggregator's
/// output, at most its pool (half of the supervisor's `buffers`).
pub(super) fn aggregated_pages_max(buffers: u32) -> u32 {
    let output = u64::from(buffers / 2) * BUFFER_SIZE as u64;
    u32::try_from(output / LINE_BYTES_A_PAGE).unwrap_or(u32::MAX)
}

/// Documents open at once.
pub(super) fn window(agents: usize) -> usize {
    (agents * 4).max(8)
}

/// Page ranges of `chunk` pages from `first` to `last`.
pub(super) fn ranges(first: u32, last: u32, chunk: u32) -> impl Iterator<Item = (u32, u32)> {
    (first..=last)
        .step_by(chunk as usize)
        .map(move |f| (f, f.saturating_add(chunk - 1).min(last)))
}

/// Pages `first..=last` in ranges of `chunk`, except the last `tail` pages, in ranges of a
/// quarter of that (at least one page): the end of a run, where an agent that has
/// finished can take none of the ranges queued at the others, so a smaller last range
/// is less time the others run on alone.
pub(super) fn tapered(
    first: u32,
    last: u32,
    chunk: u32,
    tail: u32,
) -> impl Iterator<Item = (u32, u32)> {
    let small = (chunk / 4).max(1);
    let cut = last.saturating_sub(tail).max(first.saturating_sub(1));
    ranges(first, cut, chunk).chain(ranges(cut + 1, last, small))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_page_once() {
        assert_eq!(
            ranges(1, 10, 4).collect::<Vec<_>>(),
            vec![(1, 4), (5, 8), (9, 10)]
        );
        assert_eq!(ranges(17, 16, 16).count(), 0);
        for (first, last, chunk, tail) in [
            (17, 1000, 16, 64),
            (1, 10, 4, 64),
            (5, 5, 16, 1),
            (3, 70, 16, 0),
        ] {
            let got: Vec<_> = tapered(first, last, chunk, tail).collect();
            // Every page once, in order, in ranges no longer than a chunk.
            let pages: Vec<u32> = got.iter().flat_map(|&(a, b)| a..=b).collect();
            assert_eq!(pages, (first..=last).collect::<Vec<_>>(), "{got:?}");
            assert!(got.iter().all(|&(a, b)| b - a < chunk), "{got:?}");
            // The last `tail` pages in quarter chunks.
            let small: u32 = got
                .iter()
                .filter(|&&(a, b)| b - a < (chunk / 4).max(1))
                .map(|&(a, b)| b - a + 1)
                .sum();
            assert!(small >= tail.min(last - first + 1), "{got:?}");
        }
        assert_eq!(
            tapered(17, 100, 16, 8).collect::<Vec<_>>().last(),
            Some(&(97, 100))
        );
        assert_eq!(
            ranges(u32::MAX - 1, u32::MAX, 5).collect::<Vec<_>>(),
            vec![(u32::MAX - 1, u32::MAX)]
        );
    }
}
