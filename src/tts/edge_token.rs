//! The `Sec-MS-GEC` token (scheme "2") the Edge read-aloud service requires in its URL.
//!
//! The token is `<cs64>-<sha>` in upper-case hex for the string `<ticks><client token>`, where
//! `ticks` is the current time in Windows file-time units (100 ns since 1601), rounded down
//! to five minutes. `sha` is SHA-256 over a fixed 57-byte prefix followed by that string; the
//! prefix is known only through the hash state after its first 14 words, its share of the
//! message schedule, and its last byte (`.`). `cs64` is a 64-bit keyed checksum of the string
//! (keys from the digest), whose fixed part is given as 14 coefficient pairs. These facts and
//! constants come from the public edge-tts client (rany2/edge-tts, `drm.py`); the test
//! vectors below were produced with it.

/// The client token of the Edge read-aloud extension (public, the same for everyone).
pub const TRUSTED_CLIENT_TOKEN: &str = "6A5AA1D4EAFF4E9FB37E23D68491D6F4";
/// Seconds from 1601-01-01 to 1970-01-01.
const WIN_EPOCH: u64 = 11_644_473_600;

const H0: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

const K: [u32; 64] = [
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
];

/// Working variables a..h after the prefix's first 14 words (rounds 0..14 of block 1).
const PREFIX_STATE: [u32; 8] = [
    0xFD9FBEA2, 0x91243CE7, 0xBE499094, 0xCD2E1E0A, 0x6C006F49, 0x04BD35AB, 0xFEB0A7E4, 0x03EFFBD2,
];
/// The prefix words' share of schedule words 16..30.
const PREFIX_SCHEDULE: [u32; 14] = [
    0xEB24BF9E, 0x1558691F, 0xA0C09EE2, 0x0CFA32BA, 0xA622EE8C, 0xD1DD9491, 0xC0DD25A0, 0xF9E70AB6,
    0xF0C31573, 0x7058CE4E, 0x7188E606, 0x00E5AB33, 0xD258B060, 0x72766564,
];
/// The prefix's last byte, the first byte of word 14 of block 1.
const PREFIX_LAST: u8 = b'.';
const PREFIX_LEN: usize = 57;

/// The checksum's fixed part: (term coefficient, offset) for its first 14 words.
const CS64_FIXED: [(u32, u32); 14] = [
    (0xE82E91B1, 0xB32700D0),
    (0x44DE24C6, 0x88DFF51D),
    (0x3BEB65BC, 0x29514038),
    (0xC89C5933, 0xB328CBDF),
    (0x8D1EC211, 0xD405B4D5),
    (0x314EF5D5, 0x26E55F3C),
    (0xE92491B1, 0x607801C6),
    (0xF0A5B9D5, 0x82B2C1FB),
    (0x06064CF3, 0xFA51A3DA),
    (0xDA79FA60, 0x207CC464),
    (0xBED20560, 0x3C3C74F3),
    (0x89F9C9F8, 0xD2D14B61),
    (0x35FA38C6, 0xBB04A2C1),
    (0xCB49E3C6, 0xC5626167),
];
const CS64_FACTOR: u32 = 0x82893933;
const CS64_FIRST_TERM: u32 = 0xF2F90B1A;
const CS64_FIRST_OFFSET: u32 = 0x0B1A0000;

fn s0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
fn s1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// SHA-256 rounds `from..64` on working variables `v` with the full schedule `w`.
fn rounds(mut v: [u32; 8], w: &[u32; 64], from: usize) -> [u32; 8] {
    for t in from..64 {
        let [a, b, c, d, e, f, g, h] = v;
        let big_s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(big_s1)
            .wrapping_add(ch)
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let big_s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = big_s0.wrapping_add(maj);
        v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
    }
    v
}

fn expand(w: &mut [u32; 64], from: usize) {
    for t in from..64 {
        w[t] = s1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(s0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
}

fn add(h: [u32; 8], v: [u32; 8]) -> [u32; 8] {
    std::array::from_fn(|i| h[i].wrapping_add(v[i]))
}

/// SHA-256 of the service's secret prefix followed by `data` (at least 7 bytes).
fn salted_sha256(data: &[u8]) -> [u8; 32] {
    assert!(data.len() >= 7, "the hashed string is longer than 7 bytes");
    // Block 1: the prefix's 56 first bytes, its last byte, data[..7].
    let mut w = [0u32; 64];
    w[14] = u32::from_be_bytes([PREFIX_LAST, data[0], data[1], data[2]]);
    w[15] = u32::from_be_bytes([data[3], data[4], data[5], data[6]]);
    for t in 16..30 {
        // Terms on the prefix's words 0..14 are in PREFIX_SCHEDULE.
        let mut x = PREFIX_SCHEDULE[t - 16].wrapping_add(s1(w[t - 2]));
        if t - 7 == 14 {
            // Word 14's prefix byte is already in PREFIX_SCHEDULE for this term.
            x = x.wrapping_add(w[14] & 0x00FF_FFFF);
        } else if t - 7 > 14 {
            x = x.wrapping_add(w[t - 7]);
        }
        if t - 15 >= 14 {
            x = x.wrapping_add(s0(w[t - 15]));
        }
        w[t] = x;
    }
    expand(&mut w, 30);
    let mut h = add(H0, rounds(PREFIX_STATE, &w, 14));
    // The rest of the data, padded as SHA-256 pads.
    let total = PREFIX_LEN + data.len();
    let mut rest = data[7..].to_vec();
    rest.push(0x80);
    while (PREFIX_LEN + 7 + rest.len()) % 64 != 56 {
        rest.push(0);
    }
    rest.extend_from_slice(&((total as u64) * 8).to_be_bytes());
    for block in rest.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        expand(&mut w, 16);
        h = add(h, rounds(h, &w, 0));
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn rol16(x: u32) -> u32 {
    x.rotate_left(16)
}

/// The keyed 64-bit checksum of `data`, keys from `digest`.
fn cs64(data: &[u8], digest: &[u8; 32]) -> (u32, u32) {
    let ka = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) | 1;
    let kb = u32::from_le_bytes([digest[4], digest[5], digest[6], digest[7]]) | 1;
    let fa = ka.wrapping_mul(CS64_FACTOR);
    let fb = kb.wrapping_mul(CS64_FACTOR);
    let mut words: Vec<(u32, u32)> = CS64_FIXED
        .iter()
        .enumerate()
        .map(|(i, &(c, o))| (c.wrapping_mul(if i % 2 == 0 { fa } else { fb }), o))
        .collect();
    // The data after a zero byte, as little-endian words, zero-padded to an even count.
    let mut bytes = Vec::with_capacity(data.len() + 8);
    bytes.push(0);
    bytes.extend_from_slice(data);
    while bytes.len() % 8 != 0 {
        bytes.push(0);
    }
    for (i, c) in bytes.chunks_exact(4).enumerate() {
        let x = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let even = i % 2 == 0;
        let mut term = x.wrapping_mul(if even { ka } else { kb });
        let mut offset = rol16(x).wrapping_mul(if even { 0xEF0569FB } else { 0xC31713DB });
        if i == 0 {
            term = term.wrapping_add(CS64_FIRST_TERM.wrapping_mul(fa));
            offset = offset.wrapping_add(CS64_FIRST_OFFSET);
        }
        words.push((term, offset));
    }
    let (mut swap_acc, mut swap_last, mut state, mut acc) = (0u32, 0u32, 0u32, 0u32);
    let mix = |x: u32, m: u32| rol16(x).wrapping_mul(m);
    for pair in words.chunks_exact(2) {
        let ((x, ox), (y, oy)) = (pair[0], pair[1]);
        let q = mix(ox.wrapping_add(x), 0x76F50F34);
        swap_acc = swap_acc.wrapping_add(mix(q, 0xC3EFEA97).wrapping_add(q));
        let q = mix(oy.wrapping_add(y), 0x1881CE3C);
        swap_last = mix(q, 0x35BD1EC9).wrapping_add(q);
        swap_acc = swap_acc.wrapping_add(swap_last);

        state = state.wrapping_mul(ka).wrapping_add(x);
        for m in [0xCF98B111, 0x87085B9F, 0x12CEB96D, 0x257E1D83] {
            state = mix(state, m);
        }
        acc = acc.wrapping_add(state);
        let mut t = state.wrapping_mul(kb).wrapping_add(y);
        for m in [0xA27416F5, 0xD38396FF, 0x7C932B89] {
            t = mix(t, m);
        }
        state = mix(t, 0xBFA49F69);
        acc = acc.wrapping_add(state);
    }
    (swap_last ^ state, swap_acc ^ acc)
}

/// Windows file-time ticks for a Unix time, rounded down to five minutes.
pub fn ticks(unix_secs: u64) -> u64 {
    let secs = unix_secs + WIN_EPOCH;
    (secs - secs % 300) * 10_000_000
}

/// The `Sec-MS-GEC` value for a Unix time (seconds).
pub fn sec_ms_gec(unix_secs: u64) -> String {
    let data = format!("{}{TRUSTED_CLIENT_TOKEN}", ticks(unix_secs));
    let digest = salted_sha256(data.as_bytes());
    let (lo, hi) = cs64(data.as_bytes(), &digest);
    let mut out = String::with_capacity(81);
    for b in lo.to_le_bytes().iter().chain(hi.to_le_bytes().iter()) {
        out.push_str(&format!("{b:02X}"));
    }
    out.push('-');
    for b in digest {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_the_reference_client() {
        // Produced with edge-tts 7.3.1: drm.generate_sec_ms_gec_v2(unix_timestamp).
        assert_eq!(ticks(1_700_000_000), 133_444_734_000_000_000);
        assert_eq!(
            sec_ms_gec(0),
            "52BC7A17B50DFEC9-28C4394775C8751CD2F6859C030C06DB1489ACAB3B3A7651831FC26895177ED6"
        );
        assert_eq!(
            sec_ms_gec(1_700_000_000),
            "2CD23A2CA0B2595A-F3C846C370E05F9CC83ACC5F995C5F5D87A4D0F14CE8936A0F902E64099E38A2"
        );
        assert_eq!(
            sec_ms_gec(1_767_225_600),
            "723A6EBC411B23BB-214991EA6B1E401F3D777A699DDDEE75E29740EA7A5DCD1007366FA1090DD267"
        );
        assert_eq!(
            sec_ms_gec(1_800_000_123),
            "99E54519B490BE5C-E162DB0977FBDCB9B86DD8148BF1BCDC3C0303176CE39852A42B415935C20654"
        );
    }

    #[test]
    fn salted_hash_and_checksum_match_the_reference() {
        let d = salted_sha256(b"1234567890ABCDEF");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3c81ab14982447a5864f5e60c5be5a7a23b2b8c522c18aa98e1bfda838d061a8"
        );
        assert_eq!(cs64(b"1234567890ABCDEF", &d), (2521683124, 4253688314));
        // Two blocks after the first.
        let d = salted_sha256(&[b'x'; 120]);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "b0c37b7cf1c07f0cea518980ceabf18d03cc76f76828351bc8e698253f111ff0"
        );
    }
}
