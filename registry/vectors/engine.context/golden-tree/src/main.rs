//! A small program for the engine.context conformance vectors.

fn main() {
    // TODO: read the needle from the command line
    let needle = "needle";
    println!("looking for {needle}");
}
