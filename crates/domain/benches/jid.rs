//! `Jid::parse` on the inputs the HTTP layer sees, next to the least work
//! any parser must do (split at `@`, check the user part is digits).

// A benchmark is a test harness: a panic on broken set-up is the right
// failure report, and criterion's macros generate undocumented items.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wagate_domain::Jid;

/// The floor: split at `@`, digits before it, a known server after it.
fn baseline(input: &str) -> Option<(&str, &str)> {
    let (user, server) = input.split_once('@')?;
    let digits = !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit());
    let known = matches!(server, "s.whatsapp.net" | "lid" | "g.us" | "newsletter");
    (digits && known).then_some((user, server))
}

fn jid(c: &mut Criterion) {
    let cases = [
        ("user", "14155550123@s.whatsapp.net"),
        ("user_pct40", "14155550123%40s.whatsapp.net"),
        ("user_device", "14155550123:12@s.whatsapp.net"),
        ("group", "120363025246125486@g.us"),
    ];
    for (_, input) in cases {
        Jid::parse(input).expect("every benchmark input is a valid JID");
    }
    let mut group = c.benchmark_group("jid_parse");
    group.bench_function("baseline_split_digits", |b| {
        b.iter(|| baseline(black_box("14155550123@s.whatsapp.net")))
    });
    for (name, input) in cases {
        group.bench_function(name, |b| b.iter(|| Jid::parse(black_box(input))));
    }
    group.bench_function("invalid_server", |b| {
        b.iter(|| Jid::parse(black_box("14155550123@example.com")))
    });
    group.finish();
}

criterion_group!(benches, jid);
criterion_main!(benches);
