fn main() -> std::process::ExitCode {
    ecertd::cli::main()
}
