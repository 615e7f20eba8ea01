fn main() {
    std::process::exit(mybake::cli::run(std::env::args_os()));
}
