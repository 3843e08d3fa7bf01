use memokit::memoize;

trait Shape {
    fn area(&self) -> u64;
}

#[memoize]
fn area(s: &dyn Shape) -> u64 {
    s.area()
}

#[memoize]
fn area_send(s: &(dyn Shape + Send)) -> u64 {
    s.area()
}

fn main() {}
