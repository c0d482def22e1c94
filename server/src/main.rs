//! The chat server binary. Placeholder until the chat server issue: serves an empty cluster node.
fn main() {
    println!("chat-server: not implemented yet");
}
