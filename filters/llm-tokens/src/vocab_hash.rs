// Shared by `build.rs` (which lays out the table) and the crate (which reads it): both
// must hash a token's bytes alike.

/// Slots of the token table: a power of two, under 40 % full with o200k's 199,998 tokens
/// so that a lookup, found or not, takes a probe or two.
pub const TABLE_SLOTS: usize = 1 << 19;

/// FNV-1a (64-bit) of `bytes`, folded to a slot index.
pub fn slot_of(bytes: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((hash ^ (hash >> 32)) as usize) & (TABLE_SLOTS - 1)
}
