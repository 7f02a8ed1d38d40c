fn main() {
    // Never unmap this module: LuaJIT dlclose()s C modules when the state
    // closes, while libuv's thread-pool threads (and their thread-local
    // destructors) may still run code from it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
