fn main() {
    // TODO: parse the arguments
    let x = 1;

    // TODO handle errors
    println!("{x}"); // no todo here
}
// TODO
