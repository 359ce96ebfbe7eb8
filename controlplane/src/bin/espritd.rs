//! espritd: the esprit gateway daemon.
fn main() {
    eprintln!("espritd: not yet wired up");
    std::process::exit(2);
}
