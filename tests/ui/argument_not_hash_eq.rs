use memokit::memoize;

#[derive(Clone)]
struct Query {
    text: String,
}

#[memoize]
fn run(q: &Query, limit: u32) -> usize {
    q.text.len() + limit as usize
}

fn main() {
    run(&Query { text: String::new() }, 1);
}
