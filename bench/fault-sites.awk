# fault-sites.awk: who made the heap grow, from page-fault samples with call stacks.
#
#   perf script -F period,ip,sym | awk -f bench/fault-sites.awk
#
# Each sample is a line with its period (how many faults it stands for), then its stack,
# innermost frame first, one "address symbol" per line, then a blank line. The innermost
# frames are the kernel and the allocator (sysmalloc, malloc, alloc::raw_vec,
# bytes::BytesMut::reserve ...), which say nothing about *why*; the first frame above
# them is the code that asked for the memory. The same function can serve two masters
# (hyper reads both the requests gclab serves and the answers it gets from the dbserver),
# so each site is shown with the first caller above it that names a side: hyper's client
# or server, reqwest, warp, tarpc or gclab.

function allocator(frame) {
    return frame ~ /^(sysmalloc|_int_malloc|_int_realloc|_int_memalign|_mid_memalign|__posix_memalign|memalign|posix_memalign|aligned_alloc|malloc|realloc|calloc|__libc_|__GI___libc|__rust_|__rdl_|__rustc::|__memcpy|__memmove|memcpy|memmove|memset|__memset|alloc::|<alloc::|core::|<core::|bytes::|<bytes::|std::alloc|<std::alloc::|std::sys::alloc|\[unknown\])/
}

# (Two patterns rather than one with `(^|<)`: mawk, Debian's awk, has no `^` inside a group.)
function side(frame,    names) {
    names = "(hyper(_util)?::(client|server)|hyper::proto::h1::role::(Client|Server)|reqwest::|warp::|tarpc::|gclab::)"
    return frame ~ ("^" names) || frame ~ ("<" names)
}

/^[[:space:]]*[0-9]+[[:space:]]*$/ { period = $1 + 0; site = ""; via = ""; done = 0; next }

/^$/ {
    if (site != "") { key = site (via != "" ? "  <- " via : ""); faults[key] += period; total += period }
    site = ""; done = 1
    next
}

!done {
    address = $1
    frame = $0
    sub(/^[[:space:]]*[0-9a-f]+[[:space:]]+/, "", frame)
    sub(/\+0x[0-9a-f]+.*$/, "", frame)
    sub(/ \(inlined\)$/, "", frame)
    if (site == "") {
        # Kernel frames (addresses ffff...) and the allocator: keep looking up.
        if (address !~ /^ffff/ && !allocator(frame)) site = frame
    } else if (via == "" && side(frame) && frame != site) {
        via = frame
        sub(/^</, "", via)
        sub(/ as .*$/, "", via)         # "<T as Future>::poll" -> "T"
    }
}

END {
    if (site != "" && !done) { faults[site] += period; total += period }
    if (total == 0) { print "(no samples)"; exit }
    for (s in faults) printf "%5.1f%%  %s\n", 100 * faults[s] / total, s | "sort -rn"
}
