//! o200k_base byte-pair encoding over static tables (see `build.rs`): text is split by
//! o200k's pre-tokenizer (`pretokenize.rs`), and each piece is a token or merged from its bytes,
//! lowest rank first, exactly as tiktoken does.

use std::cell::RefCell;

use crate::pretokenize;
use crate::vocab_hash::{TABLE_SLOTS, slot_of};

static TOKEN_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_bytes.bin"));
static OFFSETS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_offsets.bin"));
static SLOTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_slots.bin"));

/// o200k_base's pre-tokenizing pattern (tiktoken's `o200k_base` `pat_str`), which
/// `pretokenize.rs` implements.
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+"
);

/// Pieces longer than this are merged in slices of this size: merging is quadratic in a
/// piece's length (a 2 KiB piece takes about a millisecond), and such pieces (a run of
/// thousands of `=`, a word of base64) are rare. Each slice boundary can make the count
/// differ from tiktoken's by a few tokens.
pub(crate) const MAX_PIECE: usize = 2048;

type Rank = u32;

fn read_u32(table: &[u8], index: usize) -> u32 {
    let at = index * 4;
    u32::from_le_bytes([table[at], table[at + 1], table[at + 2], table[at + 3]])
}

fn token(rank: Rank) -> &'static [u8] {
    let rank = rank as usize;
    let start = read_u32(OFFSETS, rank) as usize;
    let end = read_u32(OFFSETS, rank + 1) as usize;
    &TOKEN_BYTES[start..end]
}

/// The rank of the token whose bytes are `bytes`, if there is one.
fn rank(bytes: &[u8]) -> Option<Rank> {
    rank_from(bytes, slot_of(bytes))
}

/// [`rank`], with `bytes`' slot already hashed.
fn rank_from(bytes: &[u8], mut slot: usize) -> Option<Rank> {
    loop {
        let entry = read_u32(SLOTS, slot);
        if entry == 0 {
            return None;
        }
        if token(entry - 1) == bytes {
            return Some(entry - 1);
        }
        slot = (slot + 1) & (TABLE_SLOTS - 1);
    }
}

/// The tokens of `text`.
pub fn count(text: &str) -> u64 {
    PIECE_COUNTS.with_borrow_mut(|cache| {
        let cache = cache.get_or_insert_with(PieceCounts::new);
        let mut tokens = 0;
        let mut parts = Vec::new();
        for piece in pretokenize::pieces(text) {
            let piece = piece.as_bytes();
            for slice in piece.chunks(MAX_PIECE) {
                tokens += cache.count(slice, &mut parts);
            }
        }
        tokens
    })
}

thread_local! {
    /// One per thread: in a filter, one per Wasm instance (which has one thread).
    static PIECE_COUNTS: RefCell<Option<PieceCounts>> = const { RefCell::new(None) };
}

/// The longest piece [`PieceCounts`] keeps.
const CACHED_PIECE_BYTES: usize = 22;
/// Entries of [`PieceCounts`]: a power of two.
pub(crate) const CACHED_PIECES: usize = 4096;

/// The counts of recently seen short pieces, direct-mapped by the pieces' table hash.
///
/// Why: the vocabulary's tables are 4.4 MB, so once a request's other work has evicted
/// them, each lookup misses the CPU's caches and TLB several times over. That made a
/// 30-word prompt's estimate take ~60 µs in the host, against 2.6 µs with the tables
/// warm. Prompts repeat (a system prompt, the conversation resent every turn) and
/// common words recur everywhere; these 96 KB answer them from one cache line each.
/// The key is the piece's bytes, so a count from here is exactly the computed one.
struct PieceCounts {
    entries: Box<[CachedPiece]>,
}

#[derive(Clone, Copy, Default)]
struct CachedPiece {
    /// 0: empty (pieces are never empty).
    len: u8,
    /// At most one token per byte, so it fits.
    tokens: u8,
    bytes: [u8; CACHED_PIECE_BYTES],
}

impl PieceCounts {
    fn new() -> Self {
        PieceCounts {
            entries: vec![CachedPiece::default(); CACHED_PIECES].into_boxed_slice(),
        }
    }

    fn count(&mut self, piece: &[u8], parts: &mut Vec<(usize, Rank)>) -> u64 {
        if piece.len() > CACHED_PIECE_BYTES {
            return count_piece(piece, slot_of(piece), parts);
        }
        let slot = slot_of(piece);
        let entry = &mut self.entries[slot & (CACHED_PIECES - 1)];
        let len = piece.len();
        if usize::from(entry.len) == len && entry.bytes[..len] == *piece {
            return u64::from(entry.tokens);
        }
        let tokens = count_piece(piece, slot, parts);
        entry.len = len as u8;
        entry.tokens = tokens as u8;
        entry.bytes[..len].copy_from_slice(piece);
        tokens
    }
}

/// The tokens of one pre-tokenized piece (whose table slot is `slot`): itself if it is a
/// token, else the number of parts left once its bytes are merged, the lowest-ranked pair
/// first.
fn count_piece(piece: &[u8], slot: usize, parts: &mut Vec<(usize, Rank)>) -> u64 {
    if piece.len() <= 1 || rank_from(piece, slot).is_some() {
        return 1;
    }
    // (start, rank of the pair starting here), and a sentinel for the end.
    parts.clear();
    for start in 0..piece.len() - 1 {
        parts.push((start, rank(&piece[start..start + 2]).unwrap_or(Rank::MAX)));
    }
    parts.push((piece.len() - 1, Rank::MAX));
    parts.push((piece.len(), Rank::MAX));
    // The rank of the pair at `i` once parts[i + 1] is merged into parts[i].
    let merged_rank = |parts: &[(usize, Rank)], i: usize| {
        if i + 3 < parts.len() {
            rank(&piece[parts[i].0..parts[i + 3].0]).unwrap_or(Rank::MAX)
        } else {
            Rank::MAX
        }
    };
    loop {
        let (i, lowest) = parts[..parts.len() - 1]
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, rank))| *rank)
            .map(|(i, &(_, rank))| (i, rank))
            .unwrap_or((0, Rank::MAX));
        if lowest == Rank::MAX {
            break;
        }
        if i > 0 {
            parts[i - 1].1 = merged_rank(parts, i - 1);
        }
        parts[i].1 = merged_rank(parts, i);
        parts.remove(i + 1);
    }
    (parts.len() - 1) as u64
}
