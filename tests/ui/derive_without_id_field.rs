use memokit::{memoize, MemoIdentity};

#[derive(MemoIdentity)]
struct Person {
    id: u64,
    name: String,
}

// One error, at the derive: its memoized methods add none (before session 22 a second error
// here said to add the derive that is there).
impl Person {
    #[memoize]
    fn greeting(&self, hello: &str) -> String {
        format!("{hello}, {} ({})", self.name, self.id)
    }
}

fn main() {
    let p = Person { id: 1, name: "a".into() };
    let _ = p.greeting("hi");
}
