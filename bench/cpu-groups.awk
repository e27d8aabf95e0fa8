# cpu-groups.awk: sums a flat perf profile by what each function belongs to.
#
#   perf report --stdio --no-children --sort dso,symbol -g none | awk -f bench/cpu-groups.awk
#
# Input lines look like `   3.21%  gclab  [.] <hyper::proto::h1::role::Server as ...>::encode`.
# A Rust symbol is filed under the first crate its name mentions, skipping the standard
# library's wrappers (`core::ptr::drop_in_place<hyper::...>` counts as hyper), and the
# crates are then put in groups a learner can act on: "warp" means routing and filters,
# "tracing" means logging even when nothing is printed, and so on.

function group_of(dso, kind, sym,    rest, crate, first) {
    if (kind == "[k]" || dso ~ /kernel/) return "kernel (syscalls, TCP, epoll, scheduler)"
    if (sym ~ /^(_int_malloc|_int_free|malloc|free|cfree|realloc|__libc_malloc|__libc_free|__GI___libc_malloc|__GI___libc_free|malloc_consolidate|tcache|unlink_chunk|sysmalloc)/)
        return "allocator (malloc/free)"
    if (dso ~ /^libc/) return "libc, other (memcpy, syscall wrappers, ...)"
    # Crate names start a path: at the start of the name, or after `<`, `(`, `&`, `*`,
    # a comma or a space (`<tokio::task::X as core::future::Future>::poll`).
    rest = " " sym; first = ""
    while (match(rest, /[ <(&*,][A-Za-z_][A-Za-z0-9_]*::/)) {
        crate = substr(rest, RSTART + 1, RLENGTH - 3)
        rest = substr(rest, RSTART + RLENGTH)
        if (first == "") first = crate
        if (crate !~ /^(core|alloc|std|impl|dyn|mut)$/) { first = crate; break }
    }
    if (first == "") return "other / unknown symbols"
    if (first == "gclab") return "gclab itself (Get path, cache, handlers)"
    if (first ~ /^(hyper|hyper_util|httparse|http|http_body|http_body_util|h2)$/) return "hyper and http (HTTP/1 parse, encode, connection)"
    if (first ~ /^(warp|headers|mime|serde_urlencoded|percent_encoding)$/) return "warp (routing, filters, replies)"
    if (first ~ /^(tracing|tracing_core|tracing_subscriber|tracing_log|log)$/) return "tracing (logging, filtered or not)"
    if (first ~ /^(tokio|mio|futures_util|futures_core|futures|pin_project)$/) return "tokio and futures (scheduler, I/O driver)"
    if (first ~ /^(lru|hashbrown|siphasher|ahash|rendezvous_hash)$/) return "hashing and the LRU map"
    if (first ~ /^(metrics|metrics_util|metrics_exporter_prometheus|hdrhistogram|quanta)$/) return "metrics (counters, histograms)"
    if (first ~ /^(bytes)$/) return "bytes"
    if (first ~ /^(alloc|__rustc)$/) return "allocator (malloc/free)"
    if (first ~ /^(std|core)$/) return "std (locks, formatting, ...)"
    return "other: " first
}

/%/ {
    pct = $1; sub(/%/, "", pct)
    dso = $2; kind = $3
    sym = $0; sub(/^[^\]]*\] /, "", sym)
    total[group_of(dso, kind, sym)] += pct
}

END {
    for (g in total) printf "%6.1f%%  %s\n", total[g], g | "sort -rn"
}
