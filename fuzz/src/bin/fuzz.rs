//! A stable-Rust fuzz driver: random inputs and mutations of seeds (bit flips, byte and
//! dictionary insertions, splices, truncations) fed to every target for a bounded time. A
//! panic prints the target and the input (hex) and exits 1.
//!
//! `fuzz [--seconds-per-target N] [--target NAME] [--seed S]`

use fuzz::{SEEDS, TARGETS};
use std::time::{Duration, Instant};

const DICTIONARY: &[&[u8]] = &[
    b"%",
    b"%ff",
    b"%2B",
    b"+",
    b"&",
    b"=",
    b"?",
    b"#",
    b"/oauth2/",
    b"access_token",
    b"Bearer ",
    b"Basic ",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"\r\n",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"--XX",
    b"\r\n\r\n",
    b"Content-Disposition: form-data; name=\"a\"",
    b"9999999999999999999999",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: plenty for input generation.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.next() as u8);
            }
            2 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let i = rng.below(input.len() + 1);
                input.splice(i..i, word.iter().copied());
            }
            3 if !input.is_empty() => {
                let len = rng.below(input.len());
                input.truncate(len);
            }
            4 => {
                let other = SEEDS[rng.below(SEEDS.len())];
                let i = rng.below(input.len() + 1);
                let j = rng.below(other.len() + 1);
                input.truncate(i);
                input.extend_from_slice(&other[j..]);
            }
            _ => {
                let len = rng.below(64);
                input.clear();
                input.extend((0..len).map(|_| rng.next() as u8));
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: f64 = value("--seconds-per-target")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let only = value("--target");
    let seed: u64 = value("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0A07);
    std::panic::set_hook(Box::new(|_| {}));
    let mut total = 0u64;
    for (name, target) in TARGETS
        .iter()
        .filter(|(n, _)| only.as_deref().is_none_or(|o| o == *n))
    {
        let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9E37_79B9_7F4A_7C15);
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut runs = 0u64;
        let mut input = Vec::new();
        while Instant::now() < deadline {
            if runs.is_multiple_of(64) {
                input = SEEDS[rng.below(SEEDS.len())].to_vec();
            }
            mutate(&mut rng, &mut input);
            let candidate = input.clone();
            if std::panic::catch_unwind(|| target(&candidate)).is_err() {
                let hex: String = candidate.iter().map(|b| format!("{b:02x}")).collect();
                eprintln!("fuzz: target {name} panicked on input (hex) {hex}");
                eprintln!("fuzz: reproduce with: cargo run -p fuzz --bin fuzz -- --target {name} --seed {seed}");
                std::process::exit(1);
            }
            runs += 1;
        }
        println!("fuzz: {name}: {runs} inputs, no panic");
        total += runs;
    }
    println!("fuzz: {total} inputs in all, no panic");
}
