//! The documented `pattern` of a webhook `url`: exactly what
//! [`wagate_domain::WebhookUrl::parse`] takes, which is what the HTTP
//! client's URL parser (WHATWG, reqwest's) takes without complaint. Built
//! from parts (IPv4 numbers in every radix WHATWG reads, each below its
//! limit) rather than written out, and in the syntax the ECMA, Python and
//! Rust regular expression engines read alike (no look-around, no `\s`).

/// White space (Unicode `White_Space`, what `char::is_whitespace` says)
/// and control characters: never in a URL.
const SPACE_AND_CONTROLS: &str = r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F";

/// Decimal numbers from 0 to `max`, without leading zeros (a leading zero
/// makes an IPv4 part octal).
fn decimal_at_most(max: u64) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alternatives = vec!["0".to_owned()];
    if n >= 3 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", n - 2));
    } else if n == 2 {
        alternatives.push("[1-9]".to_owned());
    }
    // n digits: equal to `max` up to position i, below it there.
    for i in 0..n {
        let low = u8::from(i == 0);
        let digit = digits[i];
        if digit <= low {
            continue;
        }
        let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
        let class = if digit - 1 == low {
            low.to_string()
        } else {
            format!("[{low}-{}]", digit - 1)
        };
        let rest = match n - i - 1 {
            0 => String::new(),
            1 => "[0-9]".to_owned(),
            k => format!("[0-9]{{{k}}}"),
        };
        alternatives.push(format!("{prefix}{class}{rest}"));
    }
    if n > 1 {
        alternatives.push(max.to_string());
    }
    format!("(?:{})", alternatives.join("|"))
}

/// Octal numbers (a leading `0`, any more zeros) below 2^`bits`.
fn octal_below(bits: u32) -> String {
    let digits = bits.div_ceil(3);
    let top = (1u32 << (bits - 3 * (digits - 1))) - 1;
    if top == 7 {
        return format!("0+[0-7]{{0,{digits}}}");
    }
    let first = if top == 1 {
        "1".to_owned()
    } else {
        format!("[1-{top}]")
    };
    format!(
        "0+(?:{first}[0-7]{{0,{}}}|[{}-7][0-7]{{0,{}}})?",
        digits - 1,
        top + 1,
        digits - 2
    )
}

/// A part of a WHATWG IPv4 address below 2^`bits`: decimal, octal or
/// hexadecimal (`0x`, `0x` alone is 0).
fn ipv4_number(bits: u32) -> String {
    format!(
        "(?:{}|{}|0[xX]0*[0-9A-Fa-f]{{0,{}}})",
        decimal_at_most((1u64 << bits) - 1),
        octal_below(bits),
        bits / 4
    )
}

/// An IPv4 address as WHATWG reads it: 1 to 4 parts, each but the last a
/// byte, the last filling the bytes left; a trailing `.` allowed.
fn ipv4() -> String {
    let byte = ipv4_number(8);
    format!(
        r"(?:{}|{byte}\.{}|{byte}\.{byte}\.{}|{byte}\.{byte}\.{byte}\.{byte})\.?",
        ipv4_number(32),
        ipv4_number(24),
        ipv4_number(16),
    )
}

/// A host name: ASCII letters, digits, `-` and `.` whose last label
/// (ignoring one trailing `.`) is not a number (that would make it an IPv4
/// address); or one whose last label is empty (`.`, `a..`).
fn name() -> String {
    let label = "[A-Za-z0-9-]";
    let not_a_number = format!(
        "(?:[A-Za-z-]{label}*\
         |(?:[1-9]|0[0-9])[0-9]*[A-Za-z-]{label}*\
         |0[A-WYZa-wyz-]{label}*\
         |0[xX][0-9A-Fa-f]*[G-Zg-z-]{label}*)"
    );
    format!(r"(?:(?:{label}*\.)*{not_a_number}\.?|[A-Za-z0-9.-]*\.\.|\.)")
}

/// An IPv6 address (RFC 3986 `IPv6address`, what `Ipv6Addr` parses).
fn ipv6() -> String {
    let h16 = "[0-9A-Fa-f]{1,4}";
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let ls32 = format!(r"(?:{h16}:{h16}|{octet}\.{octet}\.{octet}\.{octet})");
    let head = |n: usize| format!("(?:(?:{h16}:){{0,{n}}}{h16})?");
    [
        format!("(?:{h16}:){{6}}{ls32}"),
        format!("::(?:{h16}:){{5}}{ls32}"),
        format!("(?:{h16})?::(?:{h16}:){{4}}{ls32}"),
        format!("{}::(?:{h16}:){{3}}{ls32}", head(1)),
        format!("{}::(?:{h16}:){{2}}{ls32}", head(2)),
        format!("{}::{h16}:{ls32}", head(3)),
        format!("{}::{ls32}", head(4)),
        format!("{}::{h16}", head(5)),
        format!("{}::", head(6)),
    ]
    .join("|")
}

/// The pattern of a webhook `url`.
pub(crate) fn webhook_url_pattern() -> String {
    format!(
        r"^https?://(?:{}|{}|\[(?:{})\])(?::0*{}?)?(?:[/?][^#{SPACE_AND_CONTROLS}]*)?$",
        name(),
        ipv4(),
        ipv6(),
        decimal_at_most(65535),
    )
}
