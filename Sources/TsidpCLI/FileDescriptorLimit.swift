#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The process's open-file limit (`RLIMIT_NOFILE`), which bounds how many connections tsidp can
/// hold, and the connection budget it leaves.
enum FileDescriptorLimit {
    /// Descriptors kept free of connections: state files, the LocalAPI socket and its
    /// connections, the listening sockets, the event loops' own descriptors.
    static let reserve = 128

    /// Raises the soft limit to the hard limit.
    ///
    /// - Returns: the soft limit before and after (equal when it was already at the hard limit
    ///   or could not be raised), or nil when the limit cannot be read.
    static func raiseToHardLimit() -> (before: UInt64, after: UInt64)? {
        var limit = rlimit()
        guard getResourceLimit(&limit) == 0 else { return nil }
        let before = UInt64(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setResourceLimit(&raised) != 0 {
            #if canImport(Darwin)
                // Darwin refuses an unlimited soft limit for files; OPEN_MAX is the ceiling there.
                raised.rlim_cur = min(limit.rlim_max, rlim_t(OPEN_MAX))
                guard setResourceLimit(&raised) == 0 else { return (before, before) }
            #else
                return (before, before)
            #endif
        }
        return (before, UInt64(raised.rlim_cur))
    }

    /// The most connections each of `groups` connection counters may hold so that all of them
    /// together, plus ``reserve``, fit in `openFiles` descriptors; `configured` when it fits.
    static func connectionBudget(configured: Int, openFiles: UInt64, groups: Int) -> Int {
        let available = openFiles > UInt64(Int.max) ? Int.max : Int(openFiles)
        let perGroup = max(1, (available - reserve) / max(1, groups))
        return min(configured, perGroup)
    }

    private static func getResourceLimit(_ limit: inout rlimit) -> Int32 {
        #if canImport(Glibc)
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
            getrlimit(RLIMIT_NOFILE, &limit)
        #endif
    }

    private static func setResourceLimit(_ limit: inout rlimit) -> Int32 {
        #if canImport(Glibc)
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
            setrlimit(RLIMIT_NOFILE, &limit)
        #endif
    }
}
