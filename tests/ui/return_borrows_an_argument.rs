use memokit::memoize;

// A result is stored and outlives the call: it cannot borrow from an argument.
#[memoize]
fn first_word<'a>(text: &'a str) -> &'a str {
    text.split(' ').next().unwrap_or("")
}

// The same with the lifetime elided.
#[memoize]
fn initial(text: &str) -> &str {
    &text[..1]
}

fn main() {
    first_word("a b");
    initial("ab");
}
