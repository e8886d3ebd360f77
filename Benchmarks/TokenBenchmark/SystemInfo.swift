import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Facts about the machine and this process, read from /proc where Linux has them.
enum SystemInfo {
    /// A field of /proc/self/status in kB (`VmHWM`, `VmRSS`), or nil off Linux.
    static func statusKB(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let number = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            return number.flatMap { Int($0) }
        }
        return nil
    }

    /// Peak resident set size of this process (and so of the in-process server), in kB.
    static var peakResidentKB: Int? { statusKB("VmHWM") }

    /// The 1-minute load average, which tells whether something else was using the cores.
    static var loadAverage: String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "unknown" }
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown"
    }

    static var kernel: String {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let machine = withUnsafeBytes(of: &names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "\(release) \(machine)"
    }

    /// CPU time this process has used so far (user, system), in seconds.
    static func processCPU() -> (user: Double, system: Double) {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return (seconds(usage.ru_utime), seconds(usage.ru_stime))
    }

    /// CPU time of this process's terminated and waited-for children, in seconds.
    static func childrenCPU() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_CHILDREN.rawValue), &usage)
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    private static func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }

    /// CPU seconds all processes of the machine have spent busy (user, nice, system, irq, softirq
    /// and steal time from /proc/stat), or nil off Linux.
    static func machineBusyCPU() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count >= 8 else { return nil }
        // user nice system idle iowait irq softirq steal
        let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
        return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The file system type under `path` (`ext4`, `tmpfs`, …), so a reader knows whether fsync is real.
    static func fileSystemType(_ path: String) -> String {
        // The longest mount point in /proc/mounts that contains `path`.
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return "unknown" }
        var best: (point: String, type: String) = ("", "unknown")
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let inside = path == point || path.hasPrefix(point.hasSuffix("/") ? point : point + "/")
            if inside && point.count >= best.point.count { best = (point, String(fields[2])) }
        }
        return best.type
    }

    /// Makes a private directory `parent/prefix-XXXXXX`.
    static func makeTemporaryDirectory(prefix: String, parent: String? = nil) throws -> String {
        var base = parent ?? NSTemporaryDirectory()
        if !base.hasSuffix("/") { base += "/" }
        var template = Array((base + prefix + "-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else {
            throw BenchmarkError(
                "cannot create a temporary directory under \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: created)
    }

    /// Size of a file in bytes, or nil when it does not exist.
    static func fileSize(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    /// Whether `name` is an executable on PATH; returns its path.
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// CPU counters at one instant: this process, its children, and the whole machine.
struct CPUCounters: Sendable {
    var user: Double
    var system: Double
    var children: Double
    var machineBusy: Double?

    static func now() -> CPUCounters {
        let own = SystemInfo.processCPU()
        return CPUCounters(
            user: own.user, system: own.system, children: SystemInfo.childrenCPU(),
            machineBusy: SystemInfo.machineBusyCPU())
    }

    /// Share of all cores that other processes (not this one, not its children) kept busy between
    /// `self` and `later`, `wall` seconds apart.
    func otherUtilization(until later: CPUCounters, wall: Double) -> Double? {
        guard let before = machineBusy, let after = later.machineBusy, wall > 0 else { return nil }
        let ours = (later.user + later.system + later.children) - (user + system + children)
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return max(0, (after - before - ours) / (wall * cores))
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
