//! Lays out the o200k_base vocabulary as static tables, so that a Wasm instance counts
//! tokens without building anything at run time (tiktoken-rs' own encoder takes ~0.5 s
//! and ~30 MB to build: far past a filter call's budget). tiktoken-rs, which embeds
//! OpenAI's vocabulary file, is the source: each rank is decoded back to its bytes.
//!
//! Tables, in `OUT_DIR` (little-endian u32s):
//! - `o200k_bytes.bin`: every token's bytes, in rank order;
//! - `o200k_offsets.bin`: where each rank's bytes start (one more entry than ranks);
//! - `o200k_slots.bin`: open-addressing hash table, rank + 1 per used slot, 0 for empty.

use std::path::PathBuf;

include!("src/vocab_hash.rs");

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/vocab_hash.rs");
    let bpe = tiktoken_rs::o200k_base().expect("tiktoken-rs' o200k_base loads");
    let special: Vec<Vec<u8>> = bpe
        .special_tokens()
        .into_iter()
        .map(|token| token.as_bytes().to_vec())
        .collect();

    let mut bytes = Vec::new();
    let mut offsets: Vec<u32> = vec![0];
    let mut slots = vec![0u32; TABLE_SLOTS];
    let mut rank: u32 = 0;
    // Ranks are 0..n without gaps; special tokens come after them.
    while let Ok(token) = bpe.decode_bytes(&[rank]) {
        if special.contains(&token) {
            break;
        }
        let mut slot = slot_of(&token);
        while slots[slot] != 0 {
            slot = (slot + 1) & (TABLE_SLOTS - 1);
        }
        slots[slot] = rank + 1;
        bytes.extend_from_slice(&token);
        offsets.push(u32::try_from(bytes.len()).expect("under 4 GiB"));
        rank += 1;
    }
    assert_eq!(rank, 199_998, "o200k_base has 199,998 ordinary tokens");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let le = |values: &[u32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    std::fs::write(out.join("o200k_bytes.bin"), &bytes).expect("write");
    std::fs::write(out.join("o200k_offsets.bin"), le(&offsets)).expect("write");
    std::fs::write(out.join("o200k_slots.bin"), le(&slots)).expect("write");
}
